//! Attachments on AWS in the template: the bucket of files, its policy, and for each
//! function that handles them the bucket's name and only the S3 actions it needs
//! (docs/attachments.md, "On AWS"; docs/deploy.md, "Attachments on AWS").
//!
//! - Every function that answers messages renders their attachments with presigned
//!   `GET`s of `files/*` (signing sends no request, but the URL carries the signer's
//!   permissions): `s3:GetObject` on `files/*`.
//! - createUpload presigns the `PUT` of `uploads/*`: `s3:PutObject` on `uploads/*`.
//! - sendMessage copies `uploads/<id>` to `files/<id>` and reads the copy:
//!   `s3:GetObject` on both, `s3:PutObject` on `files/*`.
//! - deleteMessage deletes the attachment items in its transaction: `dynamodb:DeleteItem`.
//! - The presence sweeper also sweeps uploads: `s3:DeleteObject` on both prefixes and the
//!   table writes of releasing and forgetting records.

use serde_json::{Map, Value, json};

use crate::Resolver;

/// The bucket's logical id.
pub const BUCKET: &str = "AttachmentsBucket";
/// Where clients upload; a lifecycle rule expires it after [`UPLOADS_EXPIRE_DAYS`].
pub const UPLOADS: &str = chat_s3::UPLOADS_PREFIX;
/// Where checked files are kept and served from.
pub const FILES: &str = chat_s3::FILES_PREFIX;
/// Uploads never attached: their objects go a day after they were written.
pub const UPLOADS_EXPIRE_DAYS: u32 = 1;

/// The fields whose answers carry messages (and so their attachments' download URLs).
pub const RENDERING_FIELDS: [&str; 12] = [
    "Query.chat",
    "Query.chats",
    "Query.message",
    "Query.messages",
    "Query.searchMessages",
    "Mutation.createChat",
    "Mutation.updateChat",
    "Mutation.assignChat",
    "Mutation.sendMessage",
    "Mutation.editMessage",
    "Mutation.deleteMessage",
    "Mutation.createUpload",
];

fn objects(prefix: &str) -> Value {
    json!({"Fn::Sub": format!("${{{BUCKET}.Arn}}/{prefix}*")})
}

fn s3_policy(statements: Vec<(&[&str], Vec<Value>)>) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": statements
            .into_iter()
            .map(|(actions, resources)| json!({
                "Effect": "Allow", "Action": actions, "Resource": resources
            }))
            .collect::<Vec<_>>()
    })
}

fn table_policy(actions: &[&str]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": crate::table_resources()}]
    })
}

/// Gives the function `function_id` the bucket's name and these policies.
fn grant(resources: &mut Map<String, Value>, function_id: &str, policies: Vec<Value>) {
    let Some(properties) = resources
        .get_mut(function_id)
        .and_then(|f| f.get_mut("Properties"))
    else {
        return;
    };
    properties["Environment"]["Variables"]["CHAT_ATTACHMENTS_BUCKET"] = json!({"Ref": BUCKET});
    if let Some(list) = properties["Policies"].as_array_mut() {
        list.extend(policies);
    }
}

/// The bucket: private (Block Public Access, objects owned by the bucket owner), encrypted
/// (SSE-S3), uploads expired after a day, CORS for browsers' `PUT` and `GET` only.
fn bucket() -> Value {
    json!({
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{
                    "ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                    "BucketKeyEnabled": true
                }]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": true,
                "BlockPublicPolicy": true,
                "IgnorePublicAcls": true,
                "RestrictPublicBuckets": true
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "uploads-never-attached",
                        "Status": "Enabled",
                        "Prefix": UPLOADS,
                        "ExpirationInDays": UPLOADS_EXPIRE_DAYS
                    },
                    {
                        "Id": "abort-incomplete-multipart",
                        "Status": "Enabled",
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}
                    }
                ]
            },
            "CorsConfiguration": {
                "CorsRules": [{
                    "AllowedMethods": ["PUT", "GET"],
                    "AllowedOrigins": ["*"],
                    "AllowedHeaders": ["content-type"],
                    "ExposedHeaders": ["Content-Disposition"],
                    "MaxAge": 3600
                }]
            }
        }
    })
}

/// Requests that do not come over TLS are denied, whoever signs them.
fn bucket_policy() -> Value {
    json!({
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": BUCKET},
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "DenyWithoutTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [
                        {"Fn::GetAtt": [BUCKET, "Arn"]},
                        {"Fn::Sub": format!("${{{BUCKET}.Arn}}/*")}
                    ],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}
                }]
            }
        }
    })
}

/// Adds the bucket, its policy, and the grants to the generated resources.
pub fn add(resources: &mut Map<String, Value>) {
    resources.insert(BUCKET.into(), bucket());
    resources.insert(format!("{BUCKET}Policy"), bucket_policy());
    for field in RENDERING_FIELDS {
        let function_id = Resolver::new(field).function_id();
        let mut policies = vec![s3_policy(vec![(&["s3:GetObject"], vec![objects(FILES)])])];
        match field {
            "Mutation.createUpload" => {
                policies.push(s3_policy(vec![(&["s3:PutObject"], vec![objects(UPLOADS)])]));
            }
            "Mutation.sendMessage" => policies.push(s3_policy(vec![
                (&["s3:GetObject"], vec![objects(UPLOADS)]),
                (&["s3:PutObject"], vec![objects(FILES)]),
            ])),
            "Mutation.deleteMessage" => policies.push(table_policy(&["dynamodb:DeleteItem"])),
            _ => {}
        }
        grant(resources, &function_id, policies);
    }
    grant(
        resources,
        "PresenceSweeperFunction",
        vec![
            s3_policy(vec![(
                &["s3:DeleteObject"],
                vec![objects(UPLOADS), objects(FILES)],
            )]),
            table_policy(&["dynamodb:UpdateItem"]),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies_of(resources: &Map<String, Value>, id: &str) -> String {
        resources[id]["Properties"]["Policies"].to_string()
    }

    #[test]
    fn each_function_gets_only_the_actions_it_needs() {
        let mut resources = Map::new();
        for field in [
            "Mutation.createUpload",
            "Mutation.sendMessage",
            "Query.messages",
            "Query.unreadSummary",
        ] {
            resources.insert(
                Resolver::new(field).function_id(),
                json!({"Properties": {"Policies": [], "Environment": {"Variables": {}}}}),
            );
        }
        resources.insert(
            "PresenceSweeperFunction".into(),
            json!({"Properties": {"Policies": [], "Environment": {"Variables": {}}}}),
        );
        add(&mut resources);
        let id = |f: &str| Resolver::new(f).function_id();
        let upload = policies_of(&resources, &id("Mutation.createUpload"));
        assert!(upload.contains("s3:PutObject") && upload.contains("/uploads/*"));
        assert!(!upload.contains("s3:DeleteObject"));
        let reader = policies_of(&resources, &id("Query.messages"));
        assert!(reader.contains("s3:GetObject") && reader.contains("/files/*"));
        assert!(!reader.contains("s3:PutObject") && !reader.contains("/uploads/*"));
        assert!(
            resources[&id("Query.unreadSummary")]["Properties"]["Environment"]["Variables"]
                .get("CHAT_ATTACHMENTS_BUCKET")
                .is_none(),
            "a function that answers no message gets nothing"
        );
        let sweeper = policies_of(&resources, "PresenceSweeperFunction");
        assert!(sweeper.contains("s3:DeleteObject") && !sweeper.contains("s3:GetObject"));
        let bucket = resources[BUCKET]["Properties"].to_string();
        assert!(bucket.contains("\"BlockPublicPolicy\":true") && bucket.contains("uploads/"));
    }
}
