//! The table's stream on the emulator, as Lambda would deliver it: every record so far
//! (DescribeTable -> DescribeStream -> each shard from TRIM_HORIZON -> GetRecords) as
//! `aws_lambda_events` records. For tests of the stream consumers.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::DynamoStore;

fn streams_client() -> aws_sdk_dynamodbstreams::Client {
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(crate::http_client())
        .endpoint_url(crate::moto::endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "emulator", "emulator", None, None, "emulator",
        ))
        .build();
    aws_sdk_dynamodbstreams::Client::from_conf(config)
}

/// Every record of the store's table's stream so far, oldest first per shard, as Lambda
/// delivers them. Panics (failing the test) when the stream cannot be read.
pub async fn stream_records(store: &DynamoStore) -> Vec<EventRecord> {
    let table = store
        .client()
        .describe_table()
        .table_name(store.table_name())
        .send()
        .await
        .expect("DescribeTable");
    let arn = table
        .table()
        .and_then(|t| t.latest_stream_arn())
        .expect("the table has a stream")
        .to_owned();
    let streams = streams_client();
    let description = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DescribeStream");
    let shards = description
        .stream_description()
        .map(|d| d.shards().to_vec())
        .unwrap_or_default();
    assert!(!shards.is_empty(), "the stream has shards");
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().expect("a shard id"))
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        for _ in 0..1_000 {
            let Some(current) = iterator.take() else {
                break;
            };
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .expect("GetRecords");
            if page.records().is_empty() {
                break;
            }
            records.extend(page.records().iter().map(|r| lambda_record(&arn, r)));
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    records
}

/// An attribute value in DynamoDB JSON, as the Lambda event spells it.
fn dynamo_json(value: &AttributeValue) -> Value {
    let b64 = |blob: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(blob.as_ref()))
    };
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::Ss(ss) => json!({ "SS": ss }),
        AttributeValue::Ns(ns) => json!({ "NS": ns }),
        AttributeValue::Bs(bs) => json!({ "BS": bs.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(dynamo_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": item_json(m) }),
        other => panic!("an attribute value this test does not know: {other:?}"),
    }
}

fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), dynamo_json(value)))
            .collect::<Map<_, _>>(),
    )
}

/// A GetRecords record as Lambda delivers it.
fn lambda_record(arn: &str, record: &Record) -> EventRecord {
    let change = record.dynamodb().expect("a stream record");
    let mut body = Map::new();
    if let Some(at) = change.approximate_creation_date_time() {
        body.insert(
            "ApproximateCreationDateTime".into(),
            json!(at.as_secs_f64()),
        );
    }
    for (name, image) in [
        ("Keys", change.keys.as_ref()),
        ("NewImage", change.new_image.as_ref()),
        ("OldImage", change.old_image.as_ref()),
    ] {
        if let Some(image) = image {
            body.insert(name.into(), item_json(image));
        }
    }
    body.insert(
        "SequenceNumber".into(),
        json!(change.sequence_number().expect("a sequence number")),
    );
    body.insert("SizeBytes".into(), json!(change.size_bytes().unwrap_or(0)));
    if let Some(view) = change.stream_view_type() {
        body.insert("StreamViewType".into(), json!(view.as_str()));
    }
    let event = json!({
        "eventID": record.event_id().expect("an event id"),
        "eventName": record.event_name().expect("an event name").as_str(),
        "eventVersion": record.event_version().unwrap_or("1.1"),
        "eventSource": record.event_source().unwrap_or("aws:dynamodb"),
        "awsRegion": record.aws_region().unwrap_or("us-east-1"),
        "dynamodb": body,
        "eventSourceARN": arn,
    });
    serde_json::from_value(event.clone())
        .unwrap_or_else(|e| panic!("not a Lambda DynamoDB record ({e}): {event:#}"))
}
