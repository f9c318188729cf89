//! The dev server's file storage for attachments: files under `<data-dir>/uploads/`, an
//! upload endpoint and a download endpoint, each behind HMAC-signed, expiring URLs scoped
//! to one upload (`chat_domain::attachments::UrlSigner`), as S3's presigned URLs are on AWS.
//!
//! - `PUT /files/{id}?expires=…&signature=…` (upload URL): the bytes of a pending upload,
//!   streamed to a temporary file a few chunks at a time (memory does not grow with the
//!   file) and refused as soon as they pass the declared size (413). `Content-Type` must be
//!   the declared type. A file is written once: it appears under its final name only when
//!   complete and synced, and never replaces one (409), so what was checked when it was
//!   attached is what is served.
//! - `GET /files/{id}?expires=…&signature=…` (download URL): an attachment of a message
//!   that is not deleted. `X-Content-Type-Options: nosniff` and
//!   `Content-Security-Policy: default-src 'none'; sandbox` always; images (PNG, JPEG, GIF,
//!   WebP) `inline`, every other file `attachment`: nothing is ever rendered as a page of
//!   this origin (HTML is not even accepted, and text is `text/plain`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chat_domain::attachments::{
    FileStorage, SNIFF_BYTES, Upload, UploadId, UploadTarget, UploadedBytes, UrlPurpose, UrlSigner,
};
use chat_domain::{ChatService, DomainError, ErrorCode, ServerKey, Timestamp};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tower_http::cors::{Any, CorsLayer};

/// Chunks of a request body waiting for the upload's writer: what an upload in flight holds
/// in memory, whatever the size of its file.
const CHUNKS_IN_FLIGHT: usize = 2;
/// The read buffer of one download.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Files under a directory, reached through this server's signed URLs.
pub struct LocalFiles {
    dir: PathBuf,
    signer: UrlSigner,
    /// Where clients reach this server (`http://127.0.0.1:4000`), known once it listens.
    base_url: OnceLock<String>,
}

impl LocalFiles {
    /// Files under `dir` (created if needed).
    pub fn open(dir: &Path, key: ServerKey) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(LocalFiles {
            dir: dir.to_path_buf(),
            signer: UrlSigner::new(key),
            base_url: OnceLock::new(),
        })
    }

    /// Sets the URL clients reach the server at; URLs issued before fail (Internal).
    pub fn set_base_url(&self, url: &str) {
        let _ = self.base_url.set(url.trim_end_matches('/').to_owned());
    }

    pub(crate) fn path_of(&self, id: &UploadId) -> PathBuf {
        // Upload ids are `up_` and base64url: safe as a file name.
        self.dir.join(id.as_str())
    }

    fn url(
        &self,
        purpose: UrlPurpose,
        id: &UploadId,
        expires_at: Timestamp,
    ) -> Result<String, DomainError> {
        let base = self.base_url.get().ok_or_else(|| {
            DomainError::internal("file URLs", "the server's address is not known yet")
        })?;
        let signature = self.signer.sign(purpose, id, expires_at);
        Ok(format!(
            "{base}/files/{id}?expires={}&signature={signature}",
            expires_at.0
        ))
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }
}

fn io_error(context: &'static str) -> impl FnOnce(std::io::Error) -> DomainError {
    move |e| DomainError::internal(context, e)
}

#[async_trait]
impl FileStorage for LocalFiles {
    async fn upload_target(
        &self,
        upload: &Upload,
        expires_at: Timestamp,
    ) -> Result<UploadTarget, DomainError> {
        Ok(UploadTarget {
            url: self.url(UrlPurpose::Upload, &upload.id, expires_at)?,
            method: "PUT",
            headers: vec![(
                "Content-Type".to_owned(),
                upload.file_type.mime().to_owned(),
            )],
            expires_at,
        })
    }

    async fn download_url(
        &self,
        upload: &Upload,
        expires_at: Timestamp,
    ) -> Result<String, DomainError> {
        self.url(UrlPurpose::Download, &upload.id, expires_at)
    }

    async fn uploaded(&self, id: &UploadId) -> Result<Option<UploadedBytes>, DomainError> {
        let mut file = match tokio::fs::File::open(self.path_of(id)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open an uploaded file")(e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(io_error("stat an uploaded file"))?
            .len();
        let mut head = Vec::with_capacity(SNIFF_BYTES.min(size as usize));
        (&mut file)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .await
            .map_err(io_error("read an uploaded file"))?;
        Ok(Some(UploadedBytes { size, head }))
    }

    async fn remove(&self, id: &UploadId) -> Result<(), DomainError> {
        match tokio::fs::remove_file(self.path_of(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove a file")(e)),
        }
    }
}

/// Uploads in flight at most; past them a PUT is refused at once (503, `Retry-After`). Each
/// holds a blocking writer thread for as long as its client sends.
pub const UPLOADS_IN_FLIGHT_MAX: usize = 256;
/// An upload whose client sends nothing for this long is abandoned (408).
pub const UPLOAD_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the file endpoints need.
#[derive(Clone)]
pub struct FilesState {
    pub files: Arc<LocalFiles>,
    pub service: Arc<ChatService>,
    /// Permits for uploads in flight.
    pub uploads: Arc<tokio::sync::Semaphore>,
    pub idle_timeout: std::time::Duration,
}

impl FilesState {
    /// The endpoints over `files`, with the default limits.
    pub fn new(files: Arc<LocalFiles>, service: Arc<ChatService>) -> Self {
        FilesState {
            files,
            service,
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS_IN_FLIGHT_MAX)),
            idle_timeout: UPLOAD_IDLE_TIMEOUT,
        }
    }
}

/// `PUT` and `GET /files/{id}`. Any origin may call them (a web app uploads from its own
/// origin): the signed URL is the capability, not a cookie.
pub fn router(state: FilesState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::PUT])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::CONTENT_DISPOSITION]);
    Router::new()
        .route("/files/{id}", get(download).put(upload).layer(cors))
        .with_state(state)
}

#[derive(Deserialize)]
struct Signed {
    expires: Option<String>,
    signature: Option<String>,
}

fn refusal(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(json!({ "errorType": code.as_str(), "message": message })),
    )
        .into_response()
}

fn domain_refusal(error: &DomainError) -> Response {
    let status = match error.code() {
        ErrorCode::BadInput => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => {
            tracing::error!(%error, source = ?std::error::Error::source(error).map(|s| s.to_string()), "file endpoint failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    refusal(status, error.code(), &error.public_message())
}

/// The upload id of the path and the signature of the query, checked for `purpose`.
fn checked(
    state: &FilesState,
    purpose: UrlPurpose,
    id: &str,
    query: &Signed,
) -> Result<UploadId, DomainError> {
    let id = UploadId::parse(id).map_err(|_| DomainError::NotFound("no such file".into()))?;
    let forbidden = || DomainError::Forbidden("the URL is not signed".into());
    let expires = query
        .expires
        .as_deref()
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or_else(forbidden)?;
    let signature = query.signature.as_deref().ok_or_else(forbidden)?;
    state.files.signer().check(
        purpose,
        &id,
        Timestamp(expires),
        signature,
        state.service.now(),
    )?;
    Ok(id)
}

async fn upload(
    State(state): State<FilesState>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<Signed>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(&state, &id, &query, &headers, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(Refused::Domain(error)) => domain_refusal(&error),
        Err(Refused::TooLarge(declared)) => refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadInput,
            &format!("the upload was declared as {declared} bytes; more were sent"),
        ),
        Err(Refused::Idle) => refusal(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BadInput,
            &format!(
                "nothing arrived for {} s; the upload was abandoned",
                state.idle_timeout.as_secs()
            ),
        ),
        Err(Refused::Busy) => {
            let mut response = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Throttled,
                "too many uploads in flight; retry shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

enum Refused {
    Domain(DomainError),
    TooLarge(u64),
    /// The client stopped sending.
    Idle,
    /// Too many uploads in flight.
    Busy,
}

impl From<DomainError> for Refused {
    fn from(error: DomainError) -> Self {
        Refused::Domain(error)
    }
}

async fn receive(
    state: &FilesState,
    id: &str,
    query: &Signed,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Refused> {
    let id = checked(state, UrlPurpose::Upload, id, query)?;
    let _permit = state
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refused::Busy)?;
    let upload = state.service.upload_to_receive(&id).await?;
    let declared = upload.size;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != upload.file_type.mime() {
        return Err(DomainError::bad_input(format!(
            "Content-Type must be {} as declared",
            upload.file_type.mime()
        ))
        .into());
    }
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > declared
    {
        return Err(Refused::TooLarge(declared));
    }
    let final_path = state.files.path_of(&id);
    if tokio::fs::try_exists(&final_path).await.unwrap_or(false) {
        return Err(DomainError::Conflict("the file was uploaded already".into()).into());
    }
    let mut nonce = [0u8; 8];
    rand::fill(&mut nonce[..]);
    let part = state.files.dir.join(format!(
        ".part-{id}-{}",
        nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let written = write_part(&part, body, declared, state.idle_timeout).await;
    let finished = match written {
        Ok(size) if size == declared => {
            // Linking fails if the name exists: a file is never replaced.
            match tokio::fs::hard_link(&part, &final_path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(DomainError::Conflict("the file was uploaded already".into()).into())
                }
                Err(e) => Err(io_error("store an uploaded file")(e).into()),
            }
        }
        Ok(size) => Err(DomainError::bad_input(format!(
            "the upload was declared as {declared} bytes; {size} were sent"
        ))
        .into()),
        Err(refused) => Err(refused),
    };
    let _ = tokio::fs::remove_file(&part).await;
    finished
}

/// Streams `body` into `path`, stopping as soon as it passes `declared` bytes; the size
/// written. One blocking task owns the file and writes the body's chunks as they arrive,
/// at most [`CHUNKS_IN_FLIGHT`] of them waiting: what an upload holds in memory does not
/// depend on its size.
async fn write_part(
    path: &Path,
    body: Body,
    declared: u64,
    idle_timeout: std::time::Duration,
) -> Result<u64, Refused> {
    use std::io::Write;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error("create an upload file"))?;
    let (chunks, mut received) = tokio::sync::mpsc::channel::<axum::body::Bytes>(CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut file = file;
        while let Some(chunk) = received.blocking_recv() {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    });
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    let mut outcome = Ok(());
    loop {
        let Ok(next) = tokio::time::timeout(idle_timeout, stream.next()).await else {
            outcome = Err(Refused::Idle);
            break;
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                outcome =
                    Err(DomainError::bad_input(format!("the upload was interrupted: {e}")).into());
                break;
            }
        };
        size += chunk.len() as u64;
        if size > declared {
            outcome = Err(Refused::TooLarge(declared));
            break;
        }
        if chunks.send(chunk).await.is_err() {
            // The writer stopped: its error is reported below.
            break;
        }
    }
    drop(chunks);
    let written = writer
        .await
        .map_err(|e| DomainError::internal("write an upload file", e))?;
    outcome?;
    written.map_err(io_error("write an upload file"))?;
    Ok(size)
}

async fn download(
    State(state): State<FilesState>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<Signed>,
) -> Response {
    match serve(&state, &id, &query).await {
        Ok(response) => response,
        Err(error) => domain_refusal(&error),
    }
}

async fn serve(state: &FilesState, id: &str, query: &Signed) -> Result<Response, DomainError> {
    let id = checked(state, UrlPurpose::Download, id, query)?;
    let upload = state.service.attachment_to_serve(&id).await?;
    let file = match tokio::fs::File::open(state.files.path_of(&id)).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DomainError::NotFound(format!("attachment {id} not found")));
        }
        Err(e) => return Err(io_error("open an attachment")(e)),
    };
    let stream = futures::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; READ_CHUNK_BYTES];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(buffer), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let inline = upload.file_type.is_image();
    let disposition = upload.name.content_disposition(inline);
    let header_value = |v: &str| {
        HeaderValue::from_str(v).map_err(|e| DomainError::internal("a download header", e))
    };
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(upload.file_type.served_content_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(upload.size));
    headers.insert(header::CONTENT_DISPOSITION, header_value(&disposition)?);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=600"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    Ok(response)
}

/// What the tests of the file endpoints and of the sweep start from.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use chat_domain::attachments::Attachments;
    use chat_domain::{
        AppName, AppToken, Caller, ChatNumber, Clock, Role, ServerKey, UserId, UserIdentity,
    };
    use chat_embedded::SqliteStore;

    use super::*;

    /// A service on an in-memory SQLite store with attachments stored in `dir`, on `clock`,
    /// and the file storage (whose base URL the caller sets).
    pub fn service_with_files(dir: &Path, clock: Arc<dyn Clock>) -> (ChatService, Arc<LocalFiles>) {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let key = ServerKey::generate();
        let files = Arc::new(LocalFiles::open(dir, key.clone()).unwrap());
        let service = ChatService::new(store.clone(), key, clock).with_attachments(Attachments {
            uploads: store,
            files: files.clone(),
        });
        (service, files)
    }

    /// An application named `name`, its customer `c1` and that customer's chat.
    pub async fn customer_chat(
        service: &ChatService,
        name: &str,
    ) -> (AppToken, Caller, ChatNumber) {
        let app = service
            .create_application(&Caller::Admin, AppName::parse(name).unwrap())
            .await
            .unwrap()
            .application
            .token;
        let customer = Caller::User(UserIdentity {
            app: app.clone(),
            user_id: UserId::parse("c1").unwrap(),
            role: Role::Customer,
        });
        let chat = service
            .create_chat(&customer, &app, None, None)
            .await
            .unwrap()
            .number;
        (app, customer, chat)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chat_domain::SystemClock;
    use chat_domain::attachments::{FileName, FileType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The file endpoints in process with `permits` uploads in flight and `idle` patience,
    /// and the path and query of a pending 10-byte PNG upload's URL.
    async fn served(
        permits: usize,
        idle: Duration,
    ) -> (std::net::SocketAddr, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (service, files) = testing::service_with_files(dir.path(), Arc::new(SystemClock));
        let service = Arc::new(service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        files.set_base_url(&format!("http://{addr}"));
        let (app, customer, chat) = testing::customer_chat(&service, "Files").await;
        let (_, target) = service
            .create_upload(
                &customer,
                &app,
                chat,
                FileName::parse("a.png").unwrap(),
                FileType::Png,
                10,
            )
            .await
            .unwrap();
        let state = FilesState {
            files,
            service,
            uploads: Arc::new(tokio::sync::Semaphore::new(permits)),
            idle_timeout: idle,
        };
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        let path = target
            .url
            .split_once(&addr.to_string())
            .unwrap()
            .1
            .to_owned();
        (addr, path, dir)
    }

    /// Sends the head of a PUT of 10 bytes and `sent` of them, then reads the status line.
    async fn put_partially(addr: std::net::SocketAddr, path: &str, sent: &[u8]) -> String {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\n\
             Content-Length: 10\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(sent).await.unwrap();
        let mut answer = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
            .await
            .expect("an answer in time")
            .unwrap();
        String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    #[tokio::test]
    async fn an_upload_that_stops_sending_is_abandoned() {
        let (addr, path, dir) = served(4, Duration::from_millis(300)).await;
        let status = put_partially(addr, &path, b"\x89PN").await;
        assert_eq!(status, "HTTP/1.1 408 Request Timeout");
        // Nothing is left behind: no file, no part.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn uploads_past_the_limit_in_flight_are_refused_at_once() {
        let (addr, path, _dir) = served(0, Duration::from_secs(30)).await;
        let status = put_partially(addr, &path, b"").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    }
}
