//! Attachments on AWS against moto's S3 and DynamoDB (server mode, one moto per test
//! process): createUpload's presigned PUT taken by a real HTTP client, sendMessage checking
//! and attaching the upload, the presigned GET serving the bytes with the right headers.

use std::sync::Arc;

use chat_domain::attachments::{
    Attachments, DOWNLOAD_URL_TTL_MS, FileName, FileType, UPLOAD_URL_TTL_MS, UploadTarget,
    parse_size,
};
use chat_domain::{
    AppName, AppToken, Caller, ChatNumber, ChatService, ErrorCode, MessageNumber, Role, ServerKey,
    SystemClock, UserId, UserIdentity,
};
use chat_s3::S3Files;

struct World {
    service: ChatService,
    s3: aws_sdk_s3::Client,
    bucket: String,
    app: AppToken,
    customer: Caller,
    http: reqwest::Client,
}

/// The store's own S3 configuration (`chat_s3::config`), on moto (which wants path-style
/// addresses).
fn s3_client() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        chat_s3::config(&chat_dynamodb::moto::sdk_config())
            .to_builder()
            .force_path_style(true)
            .build(),
    )
}

async fn world() -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let s3 = s3_client();
    let bucket = chat_dynamodb::moto::unique_table_name("att").to_ascii_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let store = Arc::new(store);
    let service = ChatService::new(store.clone(), ServerKey::generate(), Arc::new(SystemClock))
        .with_attachments(Attachments {
            uploads: store,
            files: Arc::new(S3Files::new(s3.clone(), &bucket)),
        });
    let app = service
        .create_application(&Caller::Admin, AppName::parse("Files").unwrap())
        .await
        .unwrap()
        .application
        .token;
    let customer = Caller::User(UserIdentity {
        app: app.clone(),
        user_id: UserId::parse("cust-1").unwrap(),
        role: Role::Customer,
    });
    service
        .create_chat(&customer, &app, None, None)
        .await
        .expect("chat");
    World {
        service,
        s3,
        bucket,
        app,
        customer,
        http: reqwest::Client::new(),
    }
}

fn chat() -> ChatNumber {
    ChatNumber::new(1).unwrap()
}

/// A 3x2 PNG's signature and IHDR chunk, then padding: all `imagesize` needs.
fn png(len: usize) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&3u32.to_be_bytes());
    png.extend_from_slice(&2u32.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    png.resize(len, 0);
    png
}

impl World {
    async fn create_upload(
        &self,
        name: &str,
        kind: FileType,
        size: usize,
    ) -> (String, UploadTarget) {
        let (upload, target) = self
            .service
            .create_upload(
                &self.customer,
                &self.app,
                chat(),
                FileName::parse(name).unwrap(),
                kind,
                parse_size(size as i64).unwrap(),
            )
            .await
            .expect("createUpload");
        (upload.id.to_string(), target)
    }

    /// The upload as a client makes it: the target's method, URL and headers, the bytes.
    async fn put(&self, target: &UploadTarget, bytes: Vec<u8>) -> reqwest::Response {
        let mut request = self
            .http
            .request(target.method.parse().unwrap(), &target.url)
            .body(bytes);
        for (name, value) in &target.headers {
            request = request.header(name, value);
        }
        request.send().await.expect("PUT")
    }

    async fn send(&self, ids: &[&str]) -> chat_domain::Result<MessageNumber> {
        let ids = ids
            .iter()
            .map(|id| chat_domain::attachments::UploadId::parse(id).unwrap())
            .collect();
        self.service
            .send_message_with_attachments(&self.customer, &self.app, chat(), None, None, ids)
            .await
            .map(|sent| sent.message.number)
    }
}

/// A URL's `X-Amz-Expires`, which must be `ttl_ms` (within the second the test's clock
/// may move between the domain's reading and the presigner's).
fn assert_expires(url: &str, ttl_ms: i64) {
    let expires: i64 = query_param(url, "X-Amz-Expires")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-Amz-Expires in {url}"));
    assert!(
        (ttl_ms / 1000 - 1..=ttl_ms / 1000).contains(&expires),
        "X-Amz-Expires={expires}, expected {} s: {url}",
        ttl_ms / 1000
    );
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_upload_is_attached_and_downloaded_with_safe_headers() {
    let w = world().await;
    // Given an upload target for a 3x2 PNG of 1,000 bytes
    let bytes = png(1_000);
    let (id, target) = w
        .create_upload("Screen shot.png", FileType::Png, bytes.len())
        .await;
    assert_eq!(target.method, "PUT");
    // moto does not check signatures or expiry: the expiry signed into the URL is what
    // S3 enforces.
    assert_expires(&target.url, UPLOAD_URL_TTL_MS);
    let signed = query_param(&target.url, "X-Amz-SignedHeaders").unwrap_or_default();
    assert!(
        signed.contains("content-length") && signed.contains("content-type"),
        "type and length are signed: {signed}"
    );
    assert!(
        !target.url.contains("x-amz-checksum"),
        "no checksum of an empty body is signed: {}",
        target.url
    );
    assert!(
        target
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v == "image/png")
    );

    // When the client PUTs the bytes there and sends a message with the upload
    let put = w.put(&target, bytes.clone()).await;
    assert!(put.status().is_success(), "PUT: {}", put.status());
    let number = w.send(&[&id]).await.expect("send with the upload");

    // Then the message shows it, with dimensions and a download URL that serves the bytes
    let shown = w
        .service
        .attachments_of(&w.app, &[(chat(), number, false)])
        .await
        .unwrap();
    assert_eq!(shown.len(), 1);
    let (attachment, url) = &shown[0];
    assert_eq!(attachment.name.as_str(), "Screen shot.png");
    assert_eq!(attachment.image.map(|i| (i.width, i.height)), Some((3, 2)));
    assert_expires(url, DOWNLOAD_URL_TTL_MS);
    assert!(url.contains(&format!("/files/{id}")), "{url}");
    let got = w.http.get(url).send().await.unwrap();
    assert!(got.status().is_success(), "GET: {}", got.status());
    assert_eq!(got.headers()["content-type"], "image/png");
    let disposition = got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("inline; "), "{disposition}");
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);

    // A second use of the same upload is refused
    let again = w.send(&[&id]).await.unwrap_err();
    assert_eq!(again.code(), ErrorCode::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_is_served_as_a_download_never_as_a_page() {
    let w = world().await;
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    // Declared as plain text (HTML is not on the allow-list): it is valid UTF-8, so it
    // attaches, and is served as text/plain, as a download.
    let (id, target) = w
        .create_upload("page.html", FileType::Text, html.len())
        .await;
    assert!(w.put(&target, html.clone()).await.status().is_success());
    let number = w.send(&[&id]).await.expect("send");
    let shown = w
        .service
        .attachments_of(&w.app, &[(chat(), number, false)])
        .await
        .unwrap();
    let got = w.http.get(&shown[0].1).send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "text/plain; charset=utf-8");
    let disposition = got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment; "), "{disposition}");
    assert_eq!(got.bytes().await.unwrap().to_vec(), html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_type_lies_are_refused_and_a_missing_upload_too() {
    let w = world().await;
    // Declared 1,000 bytes, 2,000 sent. Real S3 refuses the PUT (Content-Length is signed);
    // moto does not check signatures, so the check that stands is sendMessage's.
    let (longer, target) = w.create_upload("a.png", FileType::Png, 1_000).await;
    let put = w.put(&target, png(2_000)).await;
    if put.status().is_success() {
        assert_eq!(
            w.send(&[&longer]).await.unwrap_err().code(),
            ErrorCode::BadInput
        );
    } else {
        assert_eq!(put.status(), reqwest::StatusCode::FORBIDDEN);
    }
    // Declared a PNG, HTML sent (same length).
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let (liar, target) = w.create_upload("b.png", FileType::Png, html.len()).await;
    let _ = w.put(&target, html).await;
    assert_eq!(
        w.send(&[&liar]).await.unwrap_err().code(),
        ErrorCode::BadInput
    );
    // Nothing uploaded at all.
    let (missing, _) = w.create_upload("c.png", FileType::Png, 100).await;
    assert_eq!(
        w.send(&[&missing]).await.unwrap_err().code(),
        ErrorCode::BadInput
    );
    // No message was written by any refused send.
    let chat = w.service.chat(&w.customer, &w.app, chat()).await.unwrap();
    assert_eq!(chat.expect("chat").messages_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_both_copies_of_a_file() {
    let w = world().await;
    let bytes = png(100);
    let (id, target) = w
        .create_upload("gone.png", FileType::Png, bytes.len())
        .await;
    assert!(w.put(&target, bytes).await.status().is_success());
    let files = S3Files::new(w.s3.clone(), &w.bucket);
    use chat_domain::attachments::FileStorage;
    let id = chat_domain::attachments::UploadId::parse(&id).unwrap();
    assert!(files.uploaded(&id).await.unwrap().is_some());
    files.remove(&id).await.unwrap();
    for key in [format!("uploads/{id}"), format!("files/{id}")] {
        assert!(
            w.s3.head_object()
                .bucket(&w.bucket)
                .key(&key)
                .send()
                .await
                .is_err(),
            "{key} is gone"
        );
    }
    assert!(files.uploaded(&id).await.unwrap().is_none());
    files
        .remove(&id)
        .await
        .expect("removing a missing file is fine");
}
