//! Attachments: files and images in messages, uploaded straight to file storage.
//!
//! The flow (docs/attachments.md):
//! 1. `createUpload` records a pending [`Upload`] (who, which chat, the file's name, its
//!    declared type and size) and answers a short-lived [`UploadTarget`] from the
//!    [`FileStorage`]: the client sends the bytes there, never through the API.
//! 2. `sendMessage` names upload ids. Each is checked against what was uploaded
//!    ([`verify`]: the size must equal the declared one, images must be what they claim,
//!    judged from their bytes), then the message and the attachment of every upload are
//!    written in one atomic store write ([`UploadStore::send_with_attachments`]): an upload
//!    is attached once, to one message, and only by its uploader in its own chat.
//! 3. Reading a message shows its attachments with short-lived download URLs signed per
//!    file; a deleted message shows none at once, and its files are removed after
//!    [`RELEASED_FILE_DELAY_MS`]. Uploads never attached are removed after
//!    [`UNATTACHED_UPLOAD_TTL_MS`].
//!
//! The allow-list ([`FileType`]) holds images that browsers render without running code
//! (PNG, JPEG, GIF, WebP), PDF, plain text, CSV, ZIP and the Office Open XML documents
//! (docx, xlsx, pptx). Not allowed: HTML, SVG and XML (they run script when rendered),
//! executables, and the legacy binary Office formats (macros).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::{DomainError, Result};
use crate::model::*;
use crate::secrets::ServerKey;
use crate::store::{ChatScope, NewMessage, Sent};

/// The largest file: 25 MiB.
pub const ATTACHMENT_MAX_BYTES: u64 = 25 * 1024 * 1024;
/// At most this many attachments on one message.
pub const ATTACHMENTS_PER_MESSAGE_MAX: usize = 10;
/// File names: 1..=200 characters after sanitizing.
pub const FILE_NAME_MAX_CHARS: usize = 200;
/// How long an upload target accepts the bytes.
pub const UPLOAD_URL_TTL_MS: i64 = 15 * 60 * 1000;
/// How long a download URL works. The URL is the capability: short, and per file.
pub const DOWNLOAD_URL_TTL_MS: i64 = 10 * 60 * 1000;
/// Uploads never attached are removed this long after their creation.
pub const UNATTACHED_UPLOAD_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// The files of a deleted message are removed this long after the deletion was seen (they
/// are out of view at once: no URL is issued or served for them any more).
pub const RELEASED_FILE_DELAY_MS: i64 = 60 * 60 * 1000;
/// How much of the start of a file [`verify`] reads: enough for an image's dimensions
/// (a JPEG's frame header follows its EXIF block, up to 64 KiB) and to sniff a type.
pub const SNIFF_BYTES: usize = 256 * 1024;

/// An upload's id: random, opaque to clients (`up_` and 22 characters of base64url).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UploadId(String);

impl UploadId {
    const PREFIX: &'static str = "up_";

    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes[..]);
        UploadId(format!("{}{}", Self::PREFIX, URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn parse(raw: &str) -> Result<Self> {
        let ok = raw.len() == Self::PREFIX.len() + 22
            && raw.starts_with(Self::PREFIX)
            && raw[Self::PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(UploadId(raw.to_owned()))
        } else {
            Err(DomainError::bad_input(format!(
                "{:?} is not an upload id",
                raw.chars().take(40).collect::<String>()
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file name as shown and as offered for saving: the last path segment of what the
/// client gave, without control, invisible or bidirectional characters, quotes, or
/// characters that file systems refuse; no leading dot; 1..=200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileName(String);

impl FileName {
    pub fn parse(raw: &str) -> Result<Self> {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
        let cleaned: String = last
            .chars()
            .map(|c| match c {
                '"' | '*' | ':' | '<' | '>' | '?' | '|' => '_',
                c if c.is_whitespace() => ' ',
                c => c,
            })
            .filter(|c| !c.is_control() && !is_invisible(*c))
            .collect();
        let trimmed = cleaned.trim().trim_start_matches('.').trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > FILE_NAME_MAX_CHARS {
            return Err(DomainError::bad_input(format!(
                "fileName must be 1 to {FILE_NAME_MAX_CHARS} characters after removing paths \
                 and invisible characters"
            )));
        }
        Ok(FileName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Content-Disposition` for this name (RFC 6266): an ASCII `filename` fallback and the
    /// exact name as `filename*` (RFC 8187, percent-encoded UTF-8).
    pub fn content_disposition(&self, inline: bool) -> String {
        let fallback: String = self
            .0
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut encoded = String::with_capacity(self.0.len() * 3);
        for byte in self.0.bytes() {
            // RFC 8187 attr-char.
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                encoded.push(byte as char);
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        let kind = if inline { "inline" } else { "attachment" };
        format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
    }
}

/// The allowed types of files. Anything else is refused at `createUpload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileType {
    Png,
    Jpeg,
    Gif,
    Webp,
    Pdf,
    Text,
    Csv,
    Zip,
    Docx,
    Xlsx,
    Pptx,
}

impl FileType {
    pub const ALL: [FileType; 11] = [
        FileType::Png,
        FileType::Jpeg,
        FileType::Gif,
        FileType::Webp,
        FileType::Pdf,
        FileType::Text,
        FileType::Csv,
        FileType::Zip,
        FileType::Docx,
        FileType::Xlsx,
        FileType::Pptx,
    ];

    /// The media type, as stored and served.
    pub fn mime(self) -> &'static str {
        match self {
            FileType::Png => "image/png",
            FileType::Jpeg => "image/jpeg",
            FileType::Gif => "image/gif",
            FileType::Webp => "image/webp",
            FileType::Pdf => "application/pdf",
            FileType::Text => "text/plain",
            FileType::Csv => "text/csv",
            FileType::Zip => "application/zip",
            FileType::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            FileType::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            FileType::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
        }
    }

    /// The `Content-Type` a download is served with (text gets its charset).
    pub fn served_content_type(self) -> &'static str {
        match self {
            FileType::Text => "text/plain; charset=utf-8",
            FileType::Csv => "text/csv; charset=utf-8",
            other => other.mime(),
        }
    }

    /// A declared `contentType`: the media type without parameters, case-insensitive,
    /// from the allow-list (`image/jpg` is taken for `image/jpeg`).
    pub fn parse(raw: &str) -> Result<Self> {
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let essence = if essence == "image/jpg" {
            "image/jpeg".to_owned()
        } else {
            essence
        };
        FileType::ALL
            .into_iter()
            .find(|t| t.mime() == essence)
            .ok_or_else(|| {
                DomainError::bad_input(format!(
                    "contentType {:?} is not allowed; allowed: {}",
                    raw.chars().take(100).collect::<String>(),
                    FileType::ALL.map(FileType::mime).join(", ")
                ))
            })
    }

    /// Images: shown inline, with dimensions. Everything else is served as a download.
    pub fn is_image(self) -> bool {
        matches!(
            self,
            FileType::Png | FileType::Jpeg | FileType::Gif | FileType::Webp
        )
    }
}

/// A file's declared size: 1..=[`ATTACHMENT_MAX_BYTES`].
pub fn parse_size(raw: i64) -> Result<u64> {
    u64::try_from(raw)
        .ok()
        .filter(|n| (1..=ATTACHMENT_MAX_BYTES).contains(n))
        .ok_or_else(|| {
            DomainError::bad_input(format!(
                "size must be 1 to {ATTACHMENT_MAX_BYTES} bytes (25 MiB)"
            ))
        })
}

/// Width and height of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// Created; its bytes may or may not have arrived.
    Pending,
    /// Part of this message.
    Attached(MessageNumber),
    /// Its message was deleted: out of view, the file removed later.
    Released,
}

/// An upload and, once attached, an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub app: AppToken,
    pub chat: ChatNumber,
    pub uploader: UserId,
    pub name: FileName,
    pub file_type: FileType,
    /// The declared size; once attached, also the verified one.
    pub size: u64,
    pub created_at: Timestamp,
    pub state: UploadState,
    /// Images, once attached (when their header gives them).
    pub image: Option<ImageSize>,
}

impl Upload {
    /// What webhooks and the search index carry of this file.
    pub fn attached_file(&self) -> AttachedFile {
        AttachedFile {
            name: self.name.clone(),
            file_type: self.file_type,
            size: self.size,
            image: self.image,
        }
    }
}

/// An attached file as a webhook event or the search index knows it: what it is, never
/// where. Download URLs expire within minutes, so events carry none; a receiver reads the
/// message through the API for fresh ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedFile {
    pub name: FileName,
    pub file_type: FileType,
    pub size: u64,
    pub image: Option<ImageSize>,
}

/// The files of a message's uploads, in upload order (as `Message.attachments` lists them).
pub fn attached_files(uploads: &[Upload]) -> Vec<AttachedFile> {
    let mut ordered: Vec<&Upload> = uploads.iter().collect();
    ordered.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    ordered.into_iter().map(Upload::attached_file).collect()
}

/// What a client sends the bytes to: an HTTP request it makes as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTarget {
    pub url: String,
    pub method: &'static str,
    /// Headers the request must carry as they are (they may be part of a signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: Timestamp,
}

/// What storage holds for an upload: its size and first bytes (at most [`SNIFF_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedBytes {
    pub size: u64,
    pub head: Vec<u8>,
}

/// An upload checked against its bytes, ready to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUpload {
    pub id: UploadId,
    pub image: Option<ImageSize>,
}

/// Checks what was uploaded against what was declared: the exact size, and the type from
/// the bytes (an image must be the declared kind of image, a PDF start as one, a ZIP or an
/// Office document be a ZIP, text be UTF-8 without NUL). Gives an image's dimensions from
/// its header (`imagesize`: headers only, nothing is decoded).
pub fn verify(upload: &Upload, found: Option<&UploadedBytes>) -> Result<VerifiedUpload> {
    let id = &upload.id;
    let Some(found) = found else {
        return Err(DomainError::bad_input(format!(
            "upload {id} has no file yet: upload the bytes before sending"
        )));
    };
    if found.size != upload.size {
        return Err(DomainError::bad_input(format!(
            "upload {id} is {} bytes but was declared as {} bytes",
            found.size, upload.size
        )));
    }
    let head = &found.head;
    let lie = || {
        DomainError::bad_input(format!(
            "upload {id} is not a {} file",
            upload.file_type.mime()
        ))
    };
    let image = match upload.file_type {
        FileType::Png | FileType::Jpeg | FileType::Gif | FileType::Webp => {
            let expected = match upload.file_type {
                FileType::Png => imagesize::ImageType::Png,
                FileType::Jpeg => imagesize::ImageType::Jpeg,
                FileType::Gif => imagesize::ImageType::Gif,
                _ => imagesize::ImageType::Webp,
            };
            if imagesize::image_type(head).ok() != Some(expected) {
                return Err(lie());
            }
            imagesize::blob_size(head).ok().and_then(|size| {
                Some(ImageSize {
                    width: u32::try_from(size.width).ok()?,
                    height: u32::try_from(size.height).ok()?,
                })
            })
        }
        FileType::Pdf => {
            if !head.starts_with(b"%PDF-") {
                return Err(lie());
            }
            None
        }
        FileType::Zip | FileType::Docx | FileType::Xlsx | FileType::Pptx => {
            if !(head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")) {
                return Err(lie());
            }
            None
        }
        FileType::Text | FileType::Csv => {
            if head.contains(&0) || !is_utf8_prefix(head, found.size as usize > head.len()) {
                return Err(lie());
            }
            None
        }
    };
    Ok(VerifiedUpload {
        id: upload.id.clone(),
        image,
    })
}

/// Whether `bytes` is UTF-8, allowing a character cut at the end when the file goes on.
fn is_utf8_prefix(bytes: &[u8], truncated: bool) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => truncated && e.error_len().is_none(),
    }
}

/// The storage port of the upload records. `embedded` and `dynamodb` implement it; the
/// conformance suite holds both to the same behaviour.
#[async_trait]
pub trait UploadStore: Send + Sync + 'static {
    /// Records a new pending upload.
    async fn create_upload(&self, upload: &Upload) -> Result<()>;

    /// The upload, its state as it is now (`Released` once its message is deleted).
    async fn upload(&self, id: &UploadId) -> Result<Option<Upload>>;

    /// Sends the message and attaches the uploads to it, atomically: if any upload is not
    /// pending, or not the sender's in this chat, nothing is written (Conflict). A retried
    /// send (same clientMessageId) returns the first message and attaches nothing.
    async fn send_with_attachments(
        &self,
        new: NewMessage,
        uploads: Vec<VerifiedUpload>,
    ) -> Result<Sent>;

    /// The attachments of these messages of one application, in no particular order
    /// (those of deleted messages may be among them).
    async fn attachments(
        &self,
        app: &AppToken,
        messages: &[(ChatNumber, MessageNumber)],
    ) -> Result<Vec<Upload>>;

    /// Marks the attachments of deleted messages released as of `now`; returns how many.
    async fn release_deleted(&self, now: Timestamp) -> Result<u64>;

    /// Forgets, and returns, at most `limit` uploads whose files may go: pending ones
    /// created before `pending_before`, released ones released before `released_before`.
    /// An upload attached meanwhile is not among them (the check and the removal are one
    /// write), so a file is removed only after its record is gone.
    async fn take_removable(
        &self,
        pending_before: Timestamp,
        released_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<UploadId>>;
}

/// Where the bytes live: the dev server's data directory, or S3.
#[async_trait]
pub trait FileStorage: Send + Sync + 'static {
    /// Where the client sends the bytes of `upload`, until `expires_at`.
    async fn upload_target(&self, upload: &Upload, expires_at: Timestamp) -> Result<UploadTarget>;
    /// A URL that serves the attachment until `expires_at`.
    async fn download_url(&self, upload: &Upload, expires_at: Timestamp) -> Result<String>;
    /// What was uploaded for `id` (size and first bytes), `None` when nothing was.
    async fn uploaded(&self, id: &UploadId) -> Result<Option<UploadedBytes>>;
    /// Removes the file; removing a missing file is fine.
    async fn remove(&self, id: &UploadId) -> Result<()>;
}

/// The attachment ports a [`crate::ChatService`] is built with.
#[derive(Clone)]
pub struct Attachments {
    pub uploads: std::sync::Arc<dyn UploadStore>,
    pub files: std::sync::Arc<dyn FileStorage>,
}

/// Signed, expiring URLs for a server that serves files itself (the dev server): an HMAC
/// under the server key over the purpose, the upload id and the expiry.
#[derive(Clone, Debug)]
pub struct UrlSigner {
    key: ServerKey,
}

/// What a signed URL is for: a signature for one never stands for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPurpose {
    Upload,
    Download,
}

impl UrlSigner {
    pub fn new(key: ServerKey) -> Self {
        UrlSigner { key }
    }

    fn mac(&self, purpose: UrlPurpose, id: &UploadId, expires_at: Timestamp) -> [u8; 32] {
        let purpose = match purpose {
            UrlPurpose::Upload => "chat-file-upload",
            UrlPurpose::Download => "chat-file-download",
        };
        self.key.mac(
            purpose,
            &[id.as_str().as_bytes(), expires_at.0.to_string().as_bytes()],
        )
    }

    /// The signature of a URL for `id` valid until `expires_at` (base64url).
    pub fn sign(&self, purpose: UrlPurpose, id: &UploadId, expires_at: Timestamp) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(purpose, id, expires_at))
    }

    /// Forbidden unless `signature` is this signer's for (purpose, id, expiry) and the
    /// expiry is not past.
    pub fn check(
        &self,
        purpose: UrlPurpose,
        id: &UploadId,
        expires_at: Timestamp,
        signature: &str,
        now: Timestamp,
    ) -> Result<()> {
        let given = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| DomainError::Forbidden("the URL's signature is invalid".into()))?;
        let expected = self.mac(purpose, id, expires_at);
        if given.len() != expected.len() || !bool::from(expected.ct_eq(&given[..])) {
            return Err(DomainError::Forbidden(
                "the URL's signature is invalid".into(),
            ));
        }
        if now.0 > expires_at.0 {
            return Err(DomainError::Forbidden("the URL has expired".into()));
        }
        Ok(())
    }
}

/// A new pending upload of `scope`'s chat by `uploader`.
pub fn new_upload(
    scope: &ChatScope,
    uploader: &UserId,
    name: FileName,
    file_type: FileType,
    size: u64,
    now: Timestamp,
) -> Upload {
    Upload {
        id: UploadId::generate(),
        app: scope.app.clone(),
        chat: scope.chat,
        uploader: uploader.clone(),
        name,
        file_type,
        size,
        created_at: now,
        state: UploadState::Pending,
        image: None,
    }
}

// ---- use cases ------------------------------------------------------------------------------

impl crate::service::ChatService {
    fn attachment_ports(&self) -> Result<&Attachments> {
        self.attachments().ok_or_else(|| {
            DomainError::internal(
                "attachments are not configured on this server",
                "ChatService built without with_attachments",
            )
        })
    }

    /// `createUpload`: anyone who sees the chat may upload to it, within the send rate limits
    /// ([`crate::throttle`], shared with sendMessage). Answers the pending upload and where to
    /// send its bytes.
    pub async fn create_upload(
        &self,
        caller: &crate::service::Caller,
        app: &AppToken,
        chat: ChatNumber,
        name: FileName,
        file_type: FileType,
        size: u64,
    ) -> Result<(Upload, UploadTarget)> {
        let user = crate::service::user_of(caller, app)?;
        let ports = self.attachment_ports()?;
        // Uploads share the sender's rate limits: each one is a record and a file.
        self.throttle().admit(user)?;
        let scope = user.scope(chat);
        if self.store().chat(&scope).await?.is_none() {
            return Err(DomainError::chat_not_found(chat));
        }
        let now = self.now();
        let upload = new_upload(&scope, &user.user_id, name, file_type, size, now);
        ports.uploads.create_upload(&upload).await?;
        let target = ports
            .files
            .upload_target(&upload, Timestamp(now.0 + UPLOAD_URL_TTL_MS))
            .await?;
        Ok((upload, target))
    }

    /// `sendMessage` with attachments (a body is then optional). Each upload must be the
    /// caller's, of this chat, pending, and match what was declared; the message and the
    /// attachments are written together or not at all.
    pub async fn send_message_with_attachments(
        &self,
        caller: &crate::service::Caller,
        app: &AppToken,
        chat: ChatNumber,
        body: Option<MessageBody>,
        client_message_id: Option<ClientMessageId>,
        upload_ids: Vec<UploadId>,
    ) -> Result<Sent> {
        if upload_ids.is_empty() {
            let body = body
                .ok_or_else(|| DomainError::bad_input("a message needs a body or attachments"))?;
            return self
                .send_message(caller, app, chat, body, client_message_id)
                .await;
        }
        let user = crate::service::user_of(caller, app)?;
        if upload_ids.len() > ATTACHMENTS_PER_MESSAGE_MAX {
            return Err(DomainError::bad_input(format!(
                "a message may have at most {ATTACHMENTS_PER_MESSAGE_MAX} attachments"
            )));
        }
        for (i, id) in upload_ids.iter().enumerate() {
            if upload_ids[..i].contains(id) {
                return Err(DomainError::bad_input(format!(
                    "upload {id} is named twice"
                )));
            }
        }
        self.throttle().admit(user)?;
        let ports = self.attachment_ports()?;
        let scope = user.scope(chat);
        let mut verified = Vec::with_capacity(upload_ids.len());
        for id in &upload_ids {
            // Another user's upload, or one of another chat or application, looks like one
            // that does not exist.
            let upload = ports
                .uploads
                .upload(id)
                .await?
                .filter(|u| u.app == *app && u.chat == chat && u.uploader == user.user_id)
                .ok_or_else(|| DomainError::NotFound(format!("upload {id} not found")))?;
            match upload.state {
                UploadState::Pending => {
                    let found = ports.files.uploaded(id).await?;
                    verified.push(verify(&upload, found.as_ref())?);
                }
                // A retry of a send (same clientMessageId) finds its uploads attached: the
                // store answers with the first message; anything else is a second use.
                UploadState::Attached(_) if client_message_id.is_some() => {
                    verified.push(VerifiedUpload {
                        id: id.clone(),
                        image: upload.image,
                    });
                }
                UploadState::Attached(_) | UploadState::Released => {
                    return Err(DomainError::Conflict(format!(
                        "upload {id} is already attached to a message"
                    )));
                }
            }
        }
        let new = NewMessage {
            scope,
            sender_id: user.user_id.clone(),
            sender_role: user.role,
            body: body.unwrap_or_else(MessageBody::attachments_only),
            client_message_id,
            now: self.now(),
        };
        ports.uploads.send_with_attachments(new, verified).await
    }

    /// The attachments of messages the caller has been shown (the caller's access to them
    /// was checked by the read that returned them), each with a download URL valid for
    /// [`DOWNLOAD_URL_TTL_MS`]. Deleted messages have none. Without attachments configured,
    /// nothing.
    pub async fn attachments_of(
        &self,
        app: &AppToken,
        messages: &[(ChatNumber, MessageNumber, bool)],
    ) -> Result<Vec<(Upload, String)>> {
        let Some(ports) = self.attachments() else {
            return Ok(Vec::new());
        };
        let keys: Vec<(ChatNumber, MessageNumber)> = messages
            .iter()
            .filter(|(_, _, deleted)| !deleted)
            .map(|(chat, number, _)| (*chat, *number))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = ports.uploads.attachments(app, &keys).await?;
        found
            .retain(|u| matches!(u.state, UploadState::Attached(n) if keys.contains(&(u.chat, n))));
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let expires_at = Timestamp(self.now().0 + DOWNLOAD_URL_TTL_MS);
        let mut shown = Vec::with_capacity(found.len());
        for upload in found {
            let url = ports.files.download_url(&upload, expires_at).await?;
            shown.push((upload, url));
        }
        Ok(shown)
    }

    /// The upload whose bytes a signed upload URL may still receive: pending. NotFound
    /// otherwise (attached uploads never change).
    pub async fn upload_to_receive(&self, id: &UploadId) -> Result<Upload> {
        let ports = self.attachment_ports()?;
        match ports.uploads.upload(id).await? {
            Some(upload) if upload.state == UploadState::Pending => Ok(upload),
            _ => Err(DomainError::NotFound(format!(
                "upload {id} not found or already attached"
            ))),
        }
    }

    /// The attachment a signed download URL may serve: attached to a message that is not
    /// deleted. NotFound otherwise.
    pub async fn attachment_to_serve(&self, id: &UploadId) -> Result<Upload> {
        let ports = self.attachment_ports()?;
        match ports.uploads.upload(id).await? {
            Some(upload) if matches!(upload.state, UploadState::Attached(_)) => Ok(upload),
            _ => Err(DomainError::NotFound(format!("attachment {id} not found"))),
        }
    }

    /// One round of the lifecycle: releases the attachments of deleted messages, then
    /// removes the files of uploads never attached after [`UNATTACHED_UPLOAD_TTL_MS`] and
    /// of released ones after [`RELEASED_FILE_DELAY_MS`], at most `limit`. Returns how
    /// many files were removed.
    pub async fn sweep_uploads(&self, limit: u32) -> Result<usize> {
        let ports = self.attachment_ports()?;
        let now = self.now();
        ports.uploads.release_deleted(now).await?;
        let removable = ports
            .uploads
            .take_removable(
                Timestamp(now.0 - UNATTACHED_UPLOAD_TTL_MS),
                Timestamp(now.0 - RELEASED_FILE_DELAY_MS),
                limit,
            )
            .await?;
        for id in &removable {
            ports.files.remove(id).await?;
        }
        Ok(removable.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(file_type: FileType, size: u64) -> Upload {
        Upload {
            id: UploadId::generate(),
            app: AppToken::parse("app_a").unwrap(),
            chat: ChatNumber::new(1).unwrap(),
            uploader: UserId::parse("u1").unwrap(),
            name: FileName::parse("f").unwrap(),
            file_type,
            size,
            created_at: Timestamp(0),
            state: UploadState::Pending,
            image: None,
        }
    }

    fn bytes(head: &[u8]) -> UploadedBytes {
        UploadedBytes {
            size: head.len() as u64,
            head: head.to_vec(),
        }
    }

    /// A 3x2 PNG's signature and IHDR chunk: all `imagesize` needs.
    fn png_header() -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&3u32.to_be_bytes());
        png.extend_from_slice(&2u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        png
    }

    #[test]
    fn file_names_lose_paths_controls_and_quotes() {
        let name = FileName::parse("C:\\Users\\x\\..\\re\"port\u{202E}fdp.exe\n").unwrap();
        assert_eq!(name.as_str(), "re_portfdp.exe");
        assert_eq!(
            FileName::parse("../../etc/passwd").unwrap().as_str(),
            "passwd"
        );
        assert_eq!(FileName::parse(".bashrc").unwrap().as_str(), "bashrc");
        for bad in ["", "  ", "a/", "...", "\u{200B}"] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FileName::parse(&"a".repeat(201)).is_err());
        assert!(FileName::parse(&"a".repeat(200)).is_ok());
    }

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_the_exact_name() {
        let name = FileName::parse("Rechnung März; x=1.pdf").unwrap();
        assert_eq!(
            name.content_disposition(false),
            "attachment; filename=\"Rechnung M_rz; x=1.pdf\"; \
             filename*=UTF-8''Rechnung%20M%C3%A4rz%3B%20x%3D1.pdf"
        );
        assert!(name.content_disposition(true).starts_with("inline; "));
    }

    #[test]
    fn types_come_from_the_allow_list_only() {
        assert_eq!(FileType::parse("IMAGE/PNG").unwrap(), FileType::Png);
        assert_eq!(FileType::parse("image/jpg").unwrap(), FileType::Jpeg);
        assert_eq!(
            FileType::parse("text/plain; charset=utf-8").unwrap(),
            FileType::Text
        );
        for refused in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/xml",
            "application/x-msdownload",
            "application/msword",
            "",
        ] {
            assert!(FileType::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn sizes_are_one_byte_to_25_mib() {
        assert!(parse_size(0).is_err());
        assert!(parse_size(-1).is_err());
        assert_eq!(parse_size(1).unwrap(), 1);
        assert_eq!(parse_size(25 * 1024 * 1024).unwrap(), ATTACHMENT_MAX_BYTES);
        assert!(parse_size(25 * 1024 * 1024 + 1).is_err());
    }

    #[test]
    fn verify_checks_size_and_sniffs_images() {
        let png = png_header();
        let verified =
            verify(&upload(FileType::Png, png.len() as u64), Some(&bytes(&png))).unwrap();
        assert_eq!(
            verified.image,
            Some(ImageSize {
                width: 3,
                height: 2
            })
        );
        // Declared as a JPEG, GIF or WebP: refused.
        for other in [FileType::Jpeg, FileType::Gif, FileType::Webp] {
            assert!(verify(&upload(other, png.len() as u64), Some(&bytes(&png))).is_err());
        }
        // HTML declared as an image.
        let html = b"<html><script>alert(1)</script></html>";
        assert!(
            verify(
                &upload(FileType::Png, html.len() as u64),
                Some(&bytes(html))
            )
            .is_err()
        );
        // Larger or smaller than declared; nothing uploaded.
        assert!(
            verify(
                &upload(FileType::Png, png.len() as u64 - 1),
                Some(&bytes(&png))
            )
            .is_err()
        );
        assert!(
            verify(
                &upload(FileType::Png, png.len() as u64 + 1),
                Some(&bytes(&png))
            )
            .is_err()
        );
        assert!(verify(&upload(FileType::Png, 10), None).is_err());
    }

    #[test]
    fn verify_checks_documents_and_text() {
        let pdf = b"%PDF-1.7\n...";
        assert!(verify(&upload(FileType::Pdf, pdf.len() as u64), Some(&bytes(pdf))).is_ok());
        assert!(verify(&upload(FileType::Docx, pdf.len() as u64), Some(&bytes(pdf))).is_err());
        let zip = b"PK\x03\x04rest";
        assert!(verify(&upload(FileType::Xlsx, zip.len() as u64), Some(&bytes(zip))).is_ok());
        let text = "naïve,text\n".as_bytes();
        assert!(
            verify(
                &upload(FileType::Csv, text.len() as u64),
                Some(&bytes(text))
            )
            .is_ok()
        );
        assert!(verify(&upload(FileType::Text, 4), Some(&bytes(b"a\0bc"))).is_err());
        // A character cut by the end of the sniffed head is fine when the file goes on.
        let cut = UploadedBytes {
            size: 100,
            head: "aé".as_bytes()[..2].to_vec(),
        };
        assert!(verify(&upload(FileType::Text, 100), Some(&cut)).is_ok());
        let whole = bytes(&"aé".as_bytes()[..2]);
        assert!(verify(&upload(FileType::Text, 2), Some(&whole)).is_err());
    }

    #[test]
    fn signed_urls_are_bound_to_purpose_id_and_expiry() {
        let signer = UrlSigner::new(ServerKey::generate());
        let id = UploadId::generate();
        let until = Timestamp(1_000);
        let sig = signer.sign(UrlPurpose::Download, &id, until);
        assert!(
            signer
                .check(UrlPurpose::Download, &id, until, &sig, Timestamp(999))
                .is_ok()
        );
        let refused = |purpose, id: &UploadId, until, sig: &str, now| {
            signer
                .check(purpose, id, until, sig, now)
                .unwrap_err()
                .code()
        };
        use crate::ErrorCode::Forbidden;
        assert_eq!(
            refused(UrlPurpose::Download, &id, until, &sig, Timestamp(1_001)),
            Forbidden
        );
        assert_eq!(
            refused(UrlPurpose::Upload, &id, until, &sig, Timestamp(0)),
            Forbidden
        );
        let other = UploadId::generate();
        assert_eq!(
            refused(UrlPurpose::Download, &other, until, &sig, Timestamp(0)),
            Forbidden
        );
        assert_eq!(
            refused(
                UrlPurpose::Download,
                &id,
                Timestamp(2_000),
                &sig,
                Timestamp(0)
            ),
            Forbidden
        );
        assert_eq!(
            refused(UrlPurpose::Download, &id, until, "x!", Timestamp(0)),
            Forbidden
        );
    }

    #[test]
    fn upload_ids_are_opaque_and_checked() {
        let id = UploadId::generate();
        assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "up_",
            "wh_0123456789012345678901",
            "up_../../../../etc/passwdxx",
        ] {
            assert!(UploadId::parse(bad).is_err(), "{bad}");
        }
    }
}
