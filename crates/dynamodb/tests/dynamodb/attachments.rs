//! The request budget of the upload store (the figures in docs/attachments.md), counted by
//! the SDK interceptor against the emulator, and its atomicity under racing sends.

use std::sync::Arc;

use chat_domain::attachments::{
    FileName, FileType, ImageSize, UploadState, UploadStore, VerifiedUpload, new_upload,
};
use chat_domain::*;
use chat_store_conformance::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stay_within_their_request_budget() {
    let (store, counter) = chat_dynamodb::moto::fresh_store().await;
    let store = Arc::new(store);
    let chats: Store = store.clone();
    let app = create_app(&chats, "app_att_budget").await;
    create_chat(&chats, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    let uploader = UserId::parse("cust-1").unwrap();
    let upload = |name: &str, now| {
        new_upload(
            &scope,
            &uploader,
            FileName::parse(name).unwrap(),
            FileType::Png,
            100,
            at(now),
        )
    };
    let (first, second) = (upload("a.png", 2), upload("b.png", 3));
    for u in [&first, &second] {
        assert_requests!(
            counter,
            "createUpload",
            store.create_upload(u).await.unwrap(),
            &[("TransactWriteItems", 1)]
        );
    }
    assert_requests!(
        counter,
        "upload",
        store.upload(&first.id).await.unwrap(),
        &[("GetItem", 1)]
    );
    let verified = |u: &attachments::Upload| VerifiedUpload {
        id: u.id.clone(),
        image: Some(ImageSize {
            width: 2,
            height: 1,
        }),
    };
    let sent = assert_requests!(
        counter,
        "sendMessage with 2 attachments",
        store
            .send_with_attachments(
                new_message(&scope, "two files", at(4)),
                vec![verified(&first), verified(&second)],
            )
            .await
            .unwrap(),
        &[
            ("BatchGetItem", 1),
            ("GetItem", 1),
            ("TransactWriteItems", 1)
        ]
    );
    let plain = send(&chats, &scope, "no files", at(5)).await;
    let listed = assert_requests!(
        counter,
        "attachments of a page of one chat",
        store
            .attachments(
                &app,
                &[
                    (scope.chat, sent.message.number),
                    (scope.chat, plain.number)
                ]
            )
            .await
            .unwrap(),
        &[("Query", 1)]
    );
    assert_eq!(listed.len(), 2);
    assert_requests!(
        counter,
        "deleteMessage without attachments",
        chats
            .delete_message(change(&scope, plain.number.get(), None, at(6)))
            .await
            .unwrap(),
        &[("UpdateItem", 1)]
    );
    assert_requests!(
        counter,
        "deleteMessage with attachments",
        chats
            .delete_message(change(&scope, sent.message.number.get(), None, at(7)))
            .await
            .unwrap(),
        &[("UpdateItem", 1), ("Query", 1), ("TransactWriteItems", 1)]
    );
    assert_eq!(
        store.upload(&first.id).await.unwrap().map(|u| u.state),
        Some(UploadState::Released)
    );
    assert!(
        store
            .attachments(&app, &[(scope.chat, sent.message.number)])
            .await
            .unwrap()
            .is_empty(),
        "a deleted message's attachments are gone from its chat"
    );
    assert_requests!(
        counter,
        "sweep: release 2",
        store.release_deleted(at(100)).await.unwrap(),
        &[("Query", 1), ("UpdateItem", 2)]
    );
    let taken = assert_requests!(
        counter,
        "sweep: take 2",
        store.take_removable(at(0), at(101), 10).await.unwrap(),
        &[("Query", 2), ("DeleteItem", 2)]
    );
    assert_eq!(taken.len(), 2);
}

/// Two sends race for one upload from two clients (two processes): exactly one message
/// exists afterwards and the upload is attached to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_sends_attach_an_upload_once() {
    let (first, _) = chat_dynamodb::moto::fresh_store().await;
    let second =
        chat_dynamodb::DynamoStore::new(chat_dynamodb::moto::client(None), first.table_name());
    let chats: Store = Arc::new(first.clone());
    let app = create_app(&chats, "app_att_race").await;
    create_chat(&chats, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    for round in 0..5 {
        let upload = new_upload(
            &scope,
            &UserId::parse("cust-1").unwrap(),
            FileName::parse("race.png").unwrap(),
            FileType::Png,
            100,
            at(2),
        );
        first.create_upload(&upload).await.unwrap();
        let attach = || {
            vec![VerifiedUpload {
                id: upload.id.clone(),
                image: None,
            }]
        };
        let (a, b) = tokio::join!(
            first.send_with_attachments(new_message(&scope, "a", at(3)), attach()),
            second.send_with_attachments(new_message(&scope, "b", at(3)), attach()),
        );
        let won: Vec<&Sent> = [&a, &b]
            .into_iter()
            .filter_map(|r| r.as_ref().ok())
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {a:?} / {b:?}");
        for lost in [&a, &b].into_iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(lost.code(), ErrorCode::Conflict, "round {round}");
        }
        let number = won[0].message.number;
        assert_eq!(
            first.upload(&upload.id).await.unwrap().unwrap().state,
            UploadState::Attached(number)
        );
        assert_eq!(
            get_chat(&chats, &scope).await.messages_count,
            round + 1,
            "round {round}: the losing send consumed no number"
        );
    }
}
