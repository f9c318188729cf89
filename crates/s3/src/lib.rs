//! `chat-s3`: the files of attachments on S3, the [`FileStorage`] port of
//! `chat_domain::attachments` for the AWS deployment (docs/attachments.md, "On AWS").
//!
//! - Upload target: a presigned `PutObject` of `uploads/<id>`, valid for
//!   `UPLOAD_URL_TTL_MS`, with `Content-Type` and `Content-Length` signed: S3 refuses a
//!   request whose type or length differs from what `createUpload` declared. The bucket's
//!   lifecycle rule deletes everything under `uploads/` a day after it was written.
//! - What was uploaded ([`FileStorage::uploaded`]): the object is first copied, server-side,
//!   to `files/<id>`, a key no upload URL can write; the size (HeadObject) and the first
//!   `SNIFF_BYTES` (a ranged GetObject, conditioned on the copy's ETag) are read from the
//!   copy. So what the domain checks is what is served: the upload URL stays valid until
//!   it expires and could replace `uploads/<id>` after the check, never `files/<id>`.
//! - Download URL: a presigned `GetObject` of `files/<id>`, valid for
//!   `DOWNLOAD_URL_TTL_MS`, that overrides the response's `Content-Type` (the allow-list's
//!   type, with its charset for text) and `Content-Disposition` (`attachment`, `inline`
//!   only for the safe image types), as the dev server serves them.
//! - Removing: DeleteObject of both keys (a missing key is fine).
//!
//! Requests go through the SDK client the caller builds once per process; checksums are
//! computed only where S3 requires them, so a presigned PUT carries no checksum of an empty
//! body.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use chat_domain::attachments::{
    FileStorage, SNIFF_BYTES, Upload, UploadId, UploadTarget, UploadedBytes,
};
use chat_domain::{DomainError, Result, Timestamp};

/// Where clients put the bytes (a lifecycle rule expires this prefix after a day).
pub const UPLOADS_PREFIX: &str = "uploads/";
/// Where checked files live and are served from.
pub const FILES_PREFIX: &str = "files/";

/// The S3 [`FileStorage`] on one bucket.
#[derive(Debug, Clone)]
pub struct S3Files {
    client: Client,
    bucket: String,
    clock: fn() -> Timestamp,
}

fn upload_key(id: &UploadId) -> String {
    format!("{UPLOADS_PREFIX}{id}")
}

fn file_key(id: &UploadId) -> String {
    format!("{FILES_PREFIX}{id}")
}

fn failed<E, R>(request: &str, e: SdkError<E, R>) -> DomainError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    DomainError::internal(format!("s3: {request} failed"), e)
}

fn system_now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// The S3 client configuration the store needs on top of the shared one: checksums only
/// where required (a presigned PUT must not carry one, computed over an empty body).
pub fn config(shared: &aws_config::SdkConfig) -> aws_sdk_s3::Config {
    aws_sdk_s3::config::Builder::from(shared)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build()
}

impl S3Files {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Files {
            client,
            bucket: bucket.into(),
            clock: system_now,
        }
    }

    /// A presigning configuration valid until `expires_at`, in whole seconds (rounded up:
    /// the domain's clock read a moment before), at least one.
    fn presigning(&self, expires_at: Timestamp) -> Result<PresigningConfig> {
        let seconds = (expires_at.0 - (self.clock)().0 + 999)
            .div_euclid(1_000)
            .max(1);
        PresigningConfig::expires_in(Duration::from_secs(seconds as u64))
            .map_err(|e| DomainError::internal("s3: presigning configuration", e))
    }

    /// Copies `uploads/<id>` to `files/<id>`; false when nothing was uploaded.
    async fn copy_to_files(&self, id: &UploadId) -> Result<bool> {
        let copied = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{}", self.bucket, upload_key(id)))
            .key(file_key(id))
            .send()
            .await;
        match copied {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.code(), Some("NoSuchKey" | "NotFound")) => Ok(false),
            Err(e) => Err(failed("CopyObject", e)),
        }
    }
}

#[async_trait]
impl FileStorage for S3Files {
    async fn upload_target(&self, upload: &Upload, expires_at: Timestamp) -> Result<UploadTarget> {
        let content_type = upload.file_type.mime();
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(upload_key(&upload.id))
            .content_type(content_type)
            .content_length(i64::try_from(upload.size).unwrap_or(i64::MAX))
            .presigned(self.presigning(expires_at)?)
            .await
            .map_err(|e| failed("presigning PutObject", e))?;
        // Content-Length is signed too; clients (browsers) set it from the body themselves,
        // and may not set it by hand.
        let headers = presigned
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(UploadTarget {
            url: presigned.uri().to_owned(),
            method: "PUT",
            headers,
            expires_at,
        })
    }

    async fn download_url(&self, upload: &Upload, expires_at: Timestamp) -> Result<String> {
        let inline = upload.file_type.is_image();
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(file_key(&upload.id))
            .response_content_type(upload.file_type.served_content_type())
            .response_content_disposition(upload.name.content_disposition(inline))
            .presigned(self.presigning(expires_at)?)
            .await
            .map_err(|e| failed("presigning GetObject", e))?;
        Ok(presigned.uri().to_owned())
    }

    async fn uploaded(&self, id: &UploadId) -> Result<Option<UploadedBytes>> {
        if !self.copy_to_files(id).await? {
            return Ok(None);
        }
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(file_key(id))
            .send()
            .await
            .map_err(|e| failed("HeadObject", e))?;
        let size = head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| DomainError::internal("s3: HeadObject gave no size", format!("{id}")))?;
        if size == 0 {
            return Ok(Some(UploadedBytes {
                size,
                head: Vec::new(),
            }));
        }
        let mut read = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(file_key(id))
            .range(format!("bytes=0-{}", SNIFF_BYTES - 1));
        if let Some(etag) = head.e_tag() {
            read = read.if_match(etag);
        }
        let object = read.send().await.map_err(|e| failed("GetObject", e))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| DomainError::internal("s3: reading an object's first bytes", e))?
            .into_bytes();
        Ok(Some(UploadedBytes {
            size,
            head: bytes[..bytes.len().min(SNIFF_BYTES)].to_vec(),
        }))
    }

    async fn remove(&self, id: &UploadId) -> Result<()> {
        for key in [upload_key(id), file_key(id)] {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| failed("DeleteObject", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_and_files_have_keys_of_their_own() {
        let id = UploadId::generate();
        assert_eq!(upload_key(&id), format!("uploads/{id}"));
        assert_eq!(file_key(&id), format!("files/{id}"));
    }
}
