//! The table's DynamoDB stream -> the OpenSearch index, with batchItemFailures.

fn main() -> Result<(), chat_functions::Error> {
    chat_functions::stream_indexer_main()
}
