//! Webhooks on AWS (docs/webhooks.md, "On AWS"): the stream function on the table's stream
//! (its own mapping, filtered to the records that can be events, bisected on errors, with a
//! failure destination), the task queue with its dead-letter queue, the sender on the
//! queue (partial batch responses), least-privilege policies, and their alarms. Also gives
//! the resolver that deletes an endpoint the right to remove its deliveries.

use serde_json::{Map, Value, json};

use super::{alarm, server_key_policy, table_resources, throttles_alarm};

/// `message.unseen`'s grace on AWS, seconds (an SQS message delay: at most 900).
pub const UNSEEN_GRACE_SECS: u32 = 30;
/// How often SQS hands a task to the sender before the task goes to the dead-letter queue
/// (a failed attempt is recorded and re-enqueued as a new task; only a sender fault
/// repeats a receive).
pub const MAX_RECEIVES: u32 = 5;
/// The sender's timeout, seconds: a batch of ten posts in parallel, each at most 10 s.
pub const SENDER_TIMEOUT_SECS: u32 = 30;

/// Only records that can be events reach the stream function (Lambda drops the others
/// before invoking it): chats and messages, deliveries made by redeliver (the function
/// queues only their INSERT), and endpoints enabled again (their pending deliveries are
/// queued). A DynamoDB filter looks at the record's `dynamodb` key only, both images
/// included.
pub const STREAM_FILTERS: [&str; 3] = [
    r#"{"dynamodb": {"NewImage": {"type": {"S": ["CHAT", "MSG"]}}}}"#,
    r#"{"dynamodb": {"NewImage": {"type": {"S": ["WHDLV"]}, "redelivery": {"BOOL": [true]}}}}"#,
    r#"{"dynamodb": {"NewImage": {"type": {"S": ["WHEP"]}, "enabled": {"BOOL": [true]}}, "OldImage": {"enabled": {"BOOL": [false]}}}}"#,
];

fn table_policy(actions: &[&str]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": table_resources()}]
    })
}

fn queue_send_policy(queue: &str) -> Value {
    json!({"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}}})
}

fn function(
    binary: &str,
    description: &str,
    timeout: u32,
    env: Value,
    policies: Vec<Value>,
    alarm_id: &str,
) -> Value {
    json!({
        "Type": "AWS::Serverless::Function",
        "Metadata": {
            "BuildMethod": "rust-cargolambda",
            "BuildProperties": {"Binary": binary}
        },
        "Properties": {
            "CodeUri": ".",
            "Handler": "bootstrap",
            "Description": description,
            "Timeout": timeout,
            "Environment": {"Variables": env},
            "Policies": policies,
            "DeploymentPreference": {"Alarms": [{"Ref": alarm_id}]}
        }
    })
}

/// Adds the webhook resources, and DeleteItem/BatchWriteItem to the resolver that deletes
/// an endpoint (with its deliveries).
pub fn add(resources: &mut Map<String, Value>) {
    resources.insert(
        "WebhookQueue".into(),
        json!({
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "SqsManagedSseEnabled": true,
                // SQS's longest retention: a task waits at most 15 minutes per round.
                "MessageRetentionPeriod": 1_209_600,
                // Six times the sender's timeout, as Lambda recommends for SQS sources.
                "VisibilityTimeout": 6 * SENDER_TIMEOUT_SECS,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["WebhookFailures", "Arn"]},
                    "maxReceiveCount": MAX_RECEIVES
                }
            }
        }),
    );
    // What was given up: tasks the sender failed on MAX_RECEIVES times, and the stream
    // records the stream function gave up on (their coordinates).
    resources.insert(
        "WebhookFailures".into(),
        json!({
            "Type": "AWS::SQS::Queue",
            "Properties": {"SqsManagedSseEnabled": true, "MessageRetentionPeriod": 1_209_600}
        }),
    );

    resources.insert(
        "StreamWebhooksFunction".into(),
        function(
            chat_functions::STREAM_WEBHOOKS_BINARY,
            "chat DynamoDB stream -> webhook deliveries -> SQS",
            60,
            json!({
                "CHAT_TABLE": {"Ref": "Table"},
                "CHAT_WEBHOOK_QUEUE_URL": {"Ref": "WebhookQueue"},
                "CHAT_UNSEEN_GRACE_SECS": UNSEEN_GRACE_SECS.to_string()
            }),
            vec![
                json!({"DynamoDBStreamReadPolicy": {
                    "TableName": {"Ref": "Table"},
                    "StreamName": {"Fn::Select": [3, {"Fn::Split": ["/", {"Fn::GetAtt": ["Table", "StreamArn"]}]}]}
                }}),
                table_policy(&["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"]),
                queue_send_policy("WebhookQueue"),
                queue_send_policy("WebhookFailures"),
            ],
            "StreamWebhooksErrorsAlarm",
        ),
    );
    let filters: Vec<Value> = STREAM_FILTERS
        .iter()
        .map(|pattern| json!({"Pattern": pattern}))
        .collect();
    resources.insert(
        "StreamWebhooksMapping".into(),
        json!({
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "FunctionName": {"Ref": "StreamWebhooksFunction.Alias"},
                "EventSourceArn": {"Fn::GetAtt": ["Table", "StreamArn"]},
                // Replaying is harmless: events and deliveries are named by the change.
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 100,
                "MaximumBatchingWindowInSeconds": 0,
                "ParallelizationFactor": 1,
                "BisectBatchOnFunctionError": true,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "FilterCriteria": {"Filters": filters},
                "MaximumRetryAttempts": 10,
                "MaximumRecordAgeInSeconds": 86_400,
                "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["WebhookFailures", "Arn"]}}}
            }
        }),
    );

    let mut sender = function(
        chat_functions::WEBHOOK_SENDER_BINARY,
        "chat webhook sender: signed POSTs to the endpoints, retries with backoff",
        SENDER_TIMEOUT_SECS,
        json!({
            "CHAT_TABLE": {"Ref": "Table"},
            "CHAT_SERVER_KEY_SECRET": {"Ref": "ServerKeySecret"},
            "CHAT_WEBHOOK_QUEUE_URL": {"Ref": "WebhookQueue"},
        }),
        vec![
            table_policy(&[
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:Query",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ]),
            queue_send_policy("WebhookQueue"),
            server_key_policy(),
        ],
        "WebhookSenderErrorsAlarm",
    );
    sender["Properties"]["Events"] = json!({
        "Tasks": {
            "Type": "SQS",
            "Properties": {
                "Queue": {"Fn::GetAtt": ["WebhookQueue", "Arn"]},
                "BatchSize": 10,
                "MaximumBatchingWindowInSeconds": 0,
                "FunctionResponseTypes": ["ReportBatchItemFailures"]
            }
        }
    });
    resources.insert("WebhookSenderFunction".into(), sender);

    resources.insert(
        "StreamWebhooksErrorsAlarm".into(),
        alarm(
            "StreamWebhooksFunction",
            "Errors",
            json!(1),
            "The webhook stream function failed whole invocations".into(),
        ),
    );
    resources.insert(
        "WebhookSenderErrorsAlarm".into(),
        alarm(
            "WebhookSenderFunction",
            "Errors",
            json!(1),
            "The webhook sender failed whole invocations (a failed POST is not one)".into(),
        ),
    );
    let mut age = alarm(
        "StreamWebhooksFunction",
        "IteratorAge",
        json!(60_000),
        "Webhooks are falling behind the table (oldest record not yet queued, ms)".into(),
    );
    age["Properties"]["Statistic"] = json!("Maximum");
    age["Properties"]["Period"] = json!(60);
    age["Properties"]["EvaluationPeriods"] = json!(5);
    resources.insert("StreamWebhooksIteratorAgeAlarm".into(), age);
    resources.insert(
        "WebhookFailuresAlarm".into(),
        json!({
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": "Webhook work was given up (dead-letter tasks or stream records)",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["WebhookFailures", "QueueName"]}}],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 1,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlarmTopic"}]
            }
        }),
    );
    resources.insert(
        "WebhookThrottlesAlarm".into(),
        throttles_alarm(&[
            ("StreamWebhooksFunction".into(), "webhook stream".into()),
            ("WebhookSenderFunction".into(), "webhook sender".into()),
        ]),
    );

    // deleteWebhookEndpoint removes the endpoint and its deliveries.
    if let Some(policies) = resources
        .get_mut("MutationDeleteWebhookEndpointFunction")
        .and_then(|f| f["Properties"]["Policies"].as_array_mut())
    {
        policies.push(table_policy(&[
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        ]));
    }
}
