//! Presence leases on DynamoDB beyond the shared suite: the rare write that moves a lease
//! to the user's other role (a new token), which is the one presence transaction.

use chat_domain::*;
use chat_store_conformance::fixtures::{at, token, user};

fn lease(role: Role, version: u64) -> Presence {
    Presence {
        app: token("app_roles"),
        user_id: user("u#1"),
        role,
        status: PresenceStatus::Online,
        chat: None,
        last_seen_at: at(0),
        expires_at: at(90_000),
        version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_role_changed_keeps_one_lease() {
    let (store, counter) = chat_dynamodb::moto::fresh_store().await;
    let app = token("app_roles");
    let agent = lease(Role::Agent, 1);
    store.put_presence(&agent, None).await.unwrap();

    // When the same user heartbeats as a customer over the agent lease it read.
    let customer = lease(Role::Customer, 2);
    counter.take();
    store.put_presence(&customer, Some(&agent)).await.unwrap();
    assert_eq!(
        counter.take(),
        [("TransactWriteItems".to_owned(), 1)].into()
    );

    // Then only the customer lease is stored and listed.
    assert_eq!(
        store.stored_presence(&app, &user("u#1")).await.unwrap(),
        Some(customer.clone())
    );
    let listed = store.presences(&app, None, at(0), None, 10).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&customer));
    // A writer that read the agent lease too lost: Conflict, nothing changed.
    let late = lease(Role::Customer, 2);
    let error = store.put_presence(&late, Some(&agent)).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::Conflict);
    assert_eq!(
        store.presences(&app, None, at(0), None, 10).await.unwrap(),
        [customer]
    );
}
