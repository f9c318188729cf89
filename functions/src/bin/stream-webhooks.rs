//! The table's DynamoDB stream -> webhook deliveries, handed to the SQS queue.

fn main() -> Result<(), chat_functions::Error> {
    chat_functions::stream_webhooks_main()
}
