//! One behaviour suite for every [`UploadStore`], run through
//! [`attachment_conformance_tests!`](crate::attachment_conformance_tests): uploads created,
//! attached once and atomically with their message, never someone else's, released with a
//! deleted message, and forgotten by the lifecycle. Times are given, never read from a clock.

use std::sync::Arc;

use chat_domain::attachments::{
    FileName, FileType, ImageSize, Upload, UploadId, UploadState, UploadStore, VerifiedUpload,
    new_upload,
};
use chat_domain::{
    ChatScope, ChatStore, ErrorCode, MessageBody, MessageNumber, NewMessage, Sent, Timestamp,
    UserId,
};

use crate::fixtures::{
    agent_scope, assert_code, at, change, cmid, create_app, create_chat, customer_scope, get_chat,
    new_message, user,
};

/// The stores for one test: the upload store and the chat store it attaches to (usually
/// the same object).
pub struct AttachmentsUnderTest {
    pub chats: Arc<dyn ChatStore>,
    pub uploads: Arc<dyn UploadStore>,
    pub guard: Option<Box<dyn std::any::Any + Send>>,
}

/// Asserts the error code, naming the call that should have failed.
macro_rules! refused {
    ($result:expr, $code:expr $(,)?) => {
        assert_code($result, $code, stringify!($result))
    };
}

fn uploader_of(scope: &ChatScope) -> UserId {
    scope.customer.clone().unwrap_or_else(|| user("agent-1"))
}

async fn pending(t: &AttachmentsUnderTest, scope: &ChatScope, name: &str, now: i64) -> Upload {
    let upload = new_upload(
        scope,
        &uploader_of(scope),
        FileName::parse(name).expect("valid name"),
        FileType::Png,
        1_234,
        at(now),
    );
    t.uploads
        .create_upload(&upload)
        .await
        .expect("create_upload");
    upload
}

fn verified(upload: &Upload) -> VerifiedUpload {
    VerifiedUpload {
        id: upload.id.clone(),
        image: Some(ImageSize {
            width: 640,
            height: 480,
        }),
    }
}

async fn send_with(
    t: &AttachmentsUnderTest,
    scope: &ChatScope,
    uploads: &[&Upload],
    now: i64,
) -> chat_domain::Result<Sent> {
    let mut new = new_message(scope, "see attached", at(now));
    new.body = MessageBody::attachments_only();
    t.uploads
        .send_with_attachments(new, uploads.iter().map(|u| verified(u)).collect())
        .await
}

async fn state(t: &AttachmentsUnderTest, id: &UploadId) -> Option<UploadState> {
    t.uploads.upload(id).await.expect("upload").map(|u| u.state)
}

pub async fn uploads_are_created_read_and_attached_with_their_message(t: AttachmentsUnderTest) {
    // Given a chat and two pending uploads of its customer
    let app = create_app(&t.chats, "app_att1").await;
    create_chat(&t.chats, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    let first = pending(&t, &scope, "screenshot.png", 2).await;
    let second = pending(&t, &scope, "photo.png", 3).await;
    assert_eq!(
        t.uploads.upload(&first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(t.uploads.upload(&UploadId::generate()).await.unwrap(), None);

    // When a message that is only attachments is sent with both
    let sent = send_with(&t, &scope, &[&first, &second], 4)
        .await
        .expect("send");

    // Then the message exists, empty, and both uploads are its attachments
    assert!(sent.created);
    assert_eq!(sent.message.body, "");
    let number = sent.message.number;
    for upload in [&first, &second] {
        let stored = t.uploads.upload(&upload.id).await.unwrap().expect("kept");
        assert_eq!(stored.state, UploadState::Attached(number));
        assert_eq!(
            stored.image,
            Some(ImageSize {
                width: 640,
                height: 480
            })
        );
    }
    let mut listed = t
        .uploads
        .attachments(&app, &[(scope.chat, number)])
        .await
        .unwrap();
    listed.sort_by_key(|u| u.created_at);
    let names: Vec<&str> = listed.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["screenshot.png", "photo.png"]);
    assert_eq!(get_chat(&t.chats, &scope).await.messages_count, 1);
}

pub async fn an_upload_is_attached_once_and_a_refused_send_writes_nothing(t: AttachmentsUnderTest) {
    let app = create_app(&t.chats, "app_att2").await;
    create_chat(&t.chats, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    let used = pending(&t, &scope, "a.png", 2).await;
    let fresh = pending(&t, &scope, "b.png", 3).await;
    send_with(&t, &scope, &[&used], 4).await.expect("first use");

    // A second use, even beside a fresh upload, is refused whole.
    refused!(
        send_with(&t, &scope, &[&fresh, &used], 5).await,
        ErrorCode::Conflict,
    );
    assert_eq!(state(&t, &fresh.id).await, Some(UploadState::Pending));
    assert_eq!(
        get_chat(&t.chats, &scope).await.messages_count,
        1,
        "the refused send consumed no number"
    );
    // The fresh one is still usable, and the next message takes number 2.
    let sent = send_with(&t, &scope, &[&fresh], 6).await.expect("send");
    assert_eq!(sent.message.number.get(), 2);
}

pub async fn another_users_chats_or_applications_upload_is_refused(t: AttachmentsUnderTest) {
    let app = create_app(&t.chats, "app_att3").await;
    let other_app = create_app(&t.chats, "app_att3b").await;
    create_chat(&t.chats, &app, "cust-1", at(1)).await;
    create_chat(&t.chats, &app, "cust-1", at(2)).await;
    create_chat(&t.chats, &other_app, "cust-1", at(3)).await;
    let chat1 = customer_scope(&app, 1, "cust-1");
    let upload = pending(&t, &chat1, "mine.png", 4).await;

    // The agent (another user) in the same chat
    refused!(
        send_with(&t, &agent_scope(&app, 1), &[&upload], 5).await,
        ErrorCode::Conflict,
    );
    // The uploader in another chat
    refused!(
        send_with(&t, &customer_scope(&app, 2, "cust-1"), &[&upload], 6).await,
        ErrorCode::Conflict,
    );
    // The same user id in another application
    refused!(
        send_with(&t, &customer_scope(&other_app, 1, "cust-1"), &[&upload], 7).await,
        ErrorCode::Conflict,
    );
    assert_eq!(state(&t, &upload.id).await, Some(UploadState::Pending));
    for (a, chat) in [(&app, 1), (&app, 2), (&other_app, 1)] {
        assert_eq!(
            get_chat(&t.chats, &agent_scope(a, chat))
                .await
                .messages_count,
            0
        );
    }
    // Another application never lists this one's attachments.
    send_with(&t, &chat1, &[&upload], 8).await.expect("own use");
    let number = MessageNumber::new(1).unwrap();
    assert!(
        t.uploads
            .attachments(&other_app, &[(chat1.chat, number)])
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn an_upload_needs_an_existing_chat(t: AttachmentsUnderTest) {
    let app = create_app(&t.chats, "app_att4").await;
    let scope = agent_scope(&app, 1);
    let upload = new_upload(
        &scope,
        &user("agent-1"),
        FileName::parse("a.pdf").unwrap(),
        FileType::Pdf,
        10,
        at(1),
    );
    refused!(t.uploads.create_upload(&upload).await, ErrorCode::NotFound);
    assert_eq!(t.uploads.upload(&upload.id).await.unwrap(), None);
}

pub async fn a_retried_send_returns_the_first_message_and_attaches_nothing_more(
    t: AttachmentsUnderTest,
) {
    let app = create_app(&t.chats, "app_att5").await;
    create_chat(&t.chats, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    let upload = pending(&t, &scope, "a.png", 2).await;
    let retry = |now| {
        let mut new: NewMessage = new_message(&scope, "with a file", at(now));
        new.client_message_id = Some(cmid("once"));
        new
    };
    let first = t
        .uploads
        .send_with_attachments(retry(3), vec![verified(&upload)])
        .await
        .expect("first");
    let again = t
        .uploads
        .send_with_attachments(retry(4), vec![verified(&upload)])
        .await
        .expect("retry");
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(again.message.number, first.message.number);
    assert_eq!(get_chat(&t.chats, &scope).await.messages_count, 1);
    assert_eq!(
        state(&t, &upload.id).await,
        Some(UploadState::Attached(first.message.number))
    );
}

pub async fn deleting_a_message_releases_its_attachments_and_the_files_go_later(
    t: AttachmentsUnderTest,
) {
    let app = create_app(&t.chats, "app_att6").await;
    create_chat(&t.chats, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    let upload = pending(&t, &scope, "a.png", 2).await;
    let kept = pending(&t, &scope, "b.png", 3).await;
    let sent = send_with(&t, &scope, &[&upload], 4).await.expect("send");
    send_with(&t, &scope, &[&kept], 5).await.expect("send");

    // When the first message is deleted, its attachment is released at once
    t.chats
        .delete_message(change(&scope, sent.message.number.get(), None, at(10)))
        .await
        .expect("delete");
    assert_eq!(state(&t, &upload.id).await, Some(UploadState::Released));

    // The sweep notes the release; the file may go only after the delay from then
    assert_eq!(t.uploads.release_deleted(at(100)).await.unwrap(), 1);
    assert_eq!(t.uploads.release_deleted(at(200)).await.unwrap(), 0);
    let none = t.uploads.take_removable(at(0), at(100), 100).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
    let taken = t.uploads.take_removable(at(0), at(101), 100).await.unwrap();
    assert_eq!(taken, vec![upload.id.clone()]);
    assert_eq!(state(&t, &upload.id).await, None);
    // The other message's attachment stays.
    assert_eq!(
        state(&t, &kept.id).await,
        Some(UploadState::Attached(MessageNumber::new(2).unwrap()))
    );
}

pub async fn uploads_never_attached_are_removable_after_the_cutoff(t: AttachmentsUnderTest) {
    let app = create_app(&t.chats, "app_att7").await;
    create_chat(&t.chats, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    let old = pending(&t, &scope, "old.png", 10).await;
    let attached = pending(&t, &scope, "attached.png", 11).await;
    let young = pending(&t, &scope, "young.png", 50).await;
    send_with(&t, &scope, &[&attached], 12).await.expect("send");

    let far = Timestamp(i64::MAX / 2);
    let taken = t.uploads.take_removable(at(20), far, 100).await.unwrap();
    assert_eq!(taken, vec![old.id.clone()]);
    assert_eq!(state(&t, &old.id).await, None);
    assert_eq!(state(&t, &young.id).await, Some(UploadState::Pending));
    assert!(matches!(
        state(&t, &attached.id).await,
        Some(UploadState::Attached(_))
    ));
    // A taken upload can no longer be attached.
    refused!(
        send_with(&t, &scope, &[&old], 30).await,
        ErrorCode::Conflict
    );
    // At most `limit` at a time.
    let more = [
        pending(&t, &scope, "c.png", 13).await,
        pending(&t, &scope, "d.png", 14).await,
    ];
    let first = t.uploads.take_removable(at(20), far, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = t.uploads.take_removable(at(20), far, 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(
        more.iter()
            .all(|u| first.contains(&u.id) || second.contains(&u.id))
    );
}

#[doc(hidden)]
#[macro_export]
macro_rules! __attachment_test_fns {
    ($make:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let under_test: $crate::attachments::AttachmentsUnderTest = $make.await;
                $crate::attachments::$behaviour(under_test).await;
            }
        )+
    };
}

/// Expands to one `#[tokio::test]` per attachment behaviour; `$make` is a future of an
/// [`AttachmentsUnderTest`], evaluated afresh in each test.
#[macro_export]
macro_rules! attachment_conformance_tests {
    ($make:expr) => {
        $crate::__attachment_test_fns! {$make;
            uploads_are_created_read_and_attached_with_their_message,
            an_upload_is_attached_once_and_a_refused_send_writes_nothing,
            another_users_chats_or_applications_upload_is_refused,
            an_upload_needs_an_existing_chat,
            a_retried_send_returns_the_first_message_and_attaches_nothing_more,
            deleting_a_message_releases_its_attachments_and_the_files_go_later,
            uploads_never_attached_are_removable_after_the_cutoff,
        }
    };
}
