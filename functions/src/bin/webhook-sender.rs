//! The SQS queue of webhook tasks -> signed POSTs to the endpoints.

fn main() -> Result<(), chat_functions::Error> {
    chat_functions::webhook_sender_main()
}
