//! The dev server's lifecycle of attachment files: every [`SWEEP_EVERY`] it releases the
//! attachments of deleted messages (out of view already: their URLs stop at once) and
//! removes the files of uploads never attached after a day and of released ones an hour
//! after the sweep saw them (`chat_domain::attachments`).

use std::sync::Arc;
use std::time::Duration;

use chat_domain::{ChatService, DomainError};

use crate::shutdown::Shutdown;

/// How often the dev server sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Files one round removes at most; a full round is followed by another at once.
const BATCH: u32 = 500;

/// One sweep: rounds until one comes back short; how many files were removed.
pub async fn sweep_once(service: &ChatService) -> Result<usize, DomainError> {
    let mut removed = 0;
    loop {
        let round = service.sweep_uploads(BATCH).await?;
        removed += round;
        if round < BATCH as usize {
            return Ok(removed);
        }
    }
}

/// Sweeps every [`SWEEP_EVERY`] until the server stops.
pub fn spawn(service: Arc<ChatService>, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => match sweep_once(&service).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "removed attachment files"),
                    Err(error) => {
                        tracing::error!(%error, "attachment sweep failed; the next one retries");
                    }
                },
                _ = shutdown.stopping() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chat_domain::attachments::{FileName, FileType, UploadState};
    use chat_domain::{ChatNumber, ManualClock, MessageNumber};

    use super::*;
    use crate::files::testing::{customer_chat, service_with_files};

    #[tokio::test]
    async fn files_go_a_day_after_upload_or_an_hour_after_their_message_was_deleted() {
        // Given a service on SQLite and files in a directory, on a clock that moves only
        // when told
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::starting_now();
        let (service, files) = service_with_files(dir.path(), Arc::new(clock.clone()));
        files.set_base_url("http://127.0.0.1:1");
        let (app, customer, chat) = customer_chat(&service, "Sweep").await;
        let upload = |name: &'static str| {
            let (service, customer, app, files) = (&service, &customer, &app, &files);
            async move {
                let (upload, _) = service
                    .create_upload(
                        customer,
                        app,
                        chat,
                        FileName::parse(name).unwrap(),
                        FileType::Text,
                        5,
                    )
                    .await
                    .unwrap();
                std::fs::write(files.path_of(&upload.id), b"hello").unwrap();
                upload.id
            }
        };
        let never_attached = upload("left.txt").await;
        let attached = upload("sent.txt").await;
        let kept = upload("kept.txt").await;
        for id in [&attached, &kept] {
            service
                .send_message_with_attachments(&customer, &app, chat, None, None, vec![id.clone()])
                .await
                .unwrap();
        }
        let exists = |id: &chat_domain::attachments::UploadId| files.path_of(id).exists();

        // When the first message is deleted, its attachment is out of view at once
        service
            .delete_message(&customer, &app, chat, MessageNumber::new(1).unwrap())
            .await
            .unwrap();
        assert!(service.attachment_to_serve(&attached).await.is_err());
        assert_eq!(sweep_once(&service).await.unwrap(), 0);
        assert!(exists(&attached), "removed before the delay");

        // Then its file goes an hour later, the never-attached one a day after its upload,
        // and the attachment of a live message stays
        clock.advance(Duration::from_secs(61 * 60));
        assert_eq!(sweep_once(&service).await.unwrap(), 1);
        assert!(!exists(&attached));
        assert!(exists(&never_attached));
        clock.advance(Duration::from_secs(24 * 60 * 60));
        assert_eq!(sweep_once(&service).await.unwrap(), 1);
        assert!(!exists(&never_attached));
        assert!(exists(&kept));
        let kept = service.attachment_to_serve(&kept).await.unwrap();
        assert_eq!(
            kept.state,
            UploadState::Attached(MessageNumber::new(2).unwrap())
        );
        assert_eq!(kept.chat, ChatNumber::new(1).unwrap());
    }
}
