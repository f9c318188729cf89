//! The store conformance suite against DynamoDB (moto's server mode), each test on a
//! table of its own.

use std::sync::Arc;

use chat_store_conformance::StoreUnderTest;

async fn on_emulator() -> StoreUnderTest {
    let (store, _requests) = chat_dynamodb::moto::fresh_store().await;
    StoreUnderTest::new(Arc::new(store))
}

mod dynamodb {
    chat_store_conformance::conformance_tests!(super::on_emulator());
}
