//! The table's DynamoDB stream (as Lambda delivers it: `aws_lambda_events` records) to the
//! indexer's [`ChangeRecord`]s. The stream carries every item type; only messages (`type`
//! `MSG`) are search changes, every other item (chats, idempotency keys, read watermarks,
//! unread counters ...) is skipped.
//!
//! - INSERT and MODIFY: the new image is the message after the change, its `version`
//!   attribute the change's version; the old image (MODIFY) is parsed too when present.
//!   The new message's searchable text is its body followed by its files' names (the
//!   image's `files`), as on the dev server.
//! - REMOVE (the store never removes a message; only a manual or TTL delete does): the old
//!   image is the message, and the change's version is its version + 1, so the tombstone
//!   wins over every indexed state of the message.
//! - Anything malformed (an unknown event name, no image, an image of another key, an
//!   attribute of the wrong type, no version) is an `Err` for that record alone, so the
//!   Lambda reports its sequence number in `batchItemFailures` and the rest goes on.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chat_domain::{ChangeKind, ChangeRecord, DocKey, DomainError};

use crate::error::StoreError;
use crate::items::{self, Item};
use crate::table::{self, attr, item_type};

/// One stream record converted: `Ok(None)` for an item that is not a message.
pub type Converted = Result<Option<ChangeRecord>, DomainError>;

/// Each record's sequence number (the `itemIdentifier` of a batch item failure; empty when
/// the record has none, which is then an `Err`) and its change record.
pub fn change_records(records: &[EventRecord]) -> Vec<(String, Converted)> {
    records
        .iter()
        .map(|record| {
            let sequence = record.change.sequence_number.clone().unwrap_or_default();
            let converted = change_record(&sequence, record).map_err(|e| {
                DomainError::internal(
                    format!("stream record {sequence:?} (event {})", record.event_id),
                    e,
                )
            });
            (sequence, converted)
        })
        .collect()
}

fn change_record(sequence: &str, record: &EventRecord) -> Result<Option<ChangeRecord>, StoreError> {
    if sequence.is_empty() {
        return Err(StoreError::corrupt("the record has no sequence number"));
    }
    let kind = ChangeKind::parse(&record.event_name)?;
    let new = image(&record.change.new_image);
    let old = image(&record.change.old_image);
    let Some(any) = new.as_ref().or(old.as_ref()) else {
        return Err(StoreError::corrupt(
            "the record has no image (the stream must be NEW_AND_OLD_IMAGES)",
        ));
    };
    let keys = image(&record.change.keys);
    // The key says what an item is, as everywhere in the table: only a message's key (or
    // an image that says it is a message) is a search change; anything else is skipped,
    // even with no attributes but its key (moto's first record of an item an update
    // creates, such as an unread counter, carries only the key).
    let sk = items::string(keys.as_ref().unwrap_or(any), attr::SK)?;
    if !table::is_message_sk(sk) && !items::is_type(any, item_type::MESSAGE) {
        return Ok(None);
    }
    for image in [&new, &old].into_iter().flatten() {
        same_key(keys.as_ref(), image)?;
    }
    let new_message = new.as_ref().map(searchable_message).transpose()?;
    let old_message = old.as_ref().map(items::message).transpose()?.map(|m| m.0);
    let (key, version) = match kind {
        ChangeKind::Insert | ChangeKind::Modify => {
            let (Some(image), Some(message)) = (&new, &new_message) else {
                return Err(StoreError::corrupt(format!(
                    "{} without a new image",
                    kind.as_str()
                )));
            };
            (DocKey::of(message), items::message_version(image)?)
        }
        ChangeKind::Remove => {
            let (Some(image), Some(message)) = (&old, &old_message) else {
                return Err(StoreError::corrupt("REMOVE without an old image"));
            };
            let version = items::message_version(image)?
                .checked_add(1)
                .ok_or_else(|| StoreError::corrupt("message version overflows"))?;
            (DocKey::of(message), version)
        }
    };
    Ok(Some(ChangeRecord {
        sequence: sequence.to_owned(),
        kind,
        key,
        old: old_message,
        new: new_message,
        version,
    }))
}

/// The message of an image as the index sees it: its body followed by its files' names
/// (`chat_domain::search::searchable_text`, as the SQLite outbox does).
fn searchable_message(image: &Item) -> Result<chat_domain::Message, StoreError> {
    let (mut message, _) = items::message(image)?;
    let files = items::message_files(image)?;
    if !files.is_empty() {
        message.body = chat_domain::search::searchable_text(
            &message.body,
            files.iter().map(|f| f.name.as_str()),
        );
    }
    Ok(message)
}

/// An image as an item; `None` when absent (an empty map).
pub(crate) fn image(raw: &serde_dynamo::Item) -> Option<Item> {
    (!raw.is_empty()).then(|| {
        raw.iter()
            .map(|(name, value)| (name.clone(), attribute(value)))
            .collect()
    })
}

/// The record's `Keys` and an image's `PK`/`SK` must agree.
fn same_key(keys: Option<&Item>, image: &Item) -> Result<(), StoreError> {
    let Some(keys) = keys else { return Ok(()) };
    for name in [attr::PK, attr::SK] {
        if items::string(keys, name)? != items::string(image, name)? {
            return Err(StoreError::corrupt(format!(
                "an image's {name} is not the record's key"
            )));
        }
    }
    Ok(())
}

fn attribute(value: &serde_dynamo::AttributeValue) -> AttributeValue {
    use serde_dynamo::AttributeValue as V;
    match value {
        V::N(n) => AttributeValue::N(n.clone()),
        V::S(s) => AttributeValue::S(s.clone()),
        V::Bool(b) => AttributeValue::Bool(*b),
        V::B(b) => AttributeValue::B(Blob::new(b.clone())),
        V::Null(n) => AttributeValue::Null(*n),
        V::M(m) => AttributeValue::M(
            m.iter()
                .map(|(k, v)| (k.clone(), attribute(v)))
                .collect::<HashMap<_, _>>(),
        ),
        V::L(l) => AttributeValue::L(l.iter().map(attribute).collect()),
        V::Ss(ss) => AttributeValue::Ss(ss.clone()),
        V::Ns(ns) => AttributeValue::Ns(ns.clone()),
        V::Bs(bs) => AttributeValue::Bs(bs.iter().map(|b| Blob::new(b.clone())).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A message image in DynamoDB JSON, as the stream carries it.
    fn message_image(number: u32, body: &str, deleted: bool, version: u64) -> Value {
        json!({
            "PK": {"S": "CHAT#app_x#2"},
            "SK": {"S": format!("MSG#{number:010}")},
            "type": {"S": "MSG"},
            "app": {"S": "app_x"},
            "chatNumber": {"N": "2"},
            "number": {"N": number.to_string()},
            "body": {"S": body},
            "senderId": {"S": "cust#1"},
            "senderRole": {"S": "CUSTOMER"},
            "createdAt": {"N": "1700000000000"},
            "deleted": {"BOOL": deleted},
            "customerId": {"S": "cust#1"},
            "version": {"N": version.to_string()}
        })
    }

    fn keys(number: u32) -> Value {
        json!({"PK": {"S": "CHAT#app_x#2"}, "SK": {"S": format!("MSG#{number:010}")}})
    }

    /// A record as Lambda delivers it (the shape of AWS's example event).
    fn record(
        name: &str,
        sequence: &str,
        keys: Value,
        new: Option<Value>,
        old: Option<Value>,
    ) -> EventRecord {
        let mut change = json!({
            "ApproximateCreationDateTime": 1700000000.0,
            "Keys": keys,
            "SequenceNumber": sequence,
            "SizeBytes": 312,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        });
        if let Some(new) = new {
            change["NewImage"] = new;
        }
        if let Some(old) = old {
            change["OldImage"] = old;
        }
        serde_json::from_value(json!({
            "eventID": format!("event-{sequence}"),
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": change,
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/chat/stream/2026-01-01T00:00:00.000"
        }))
        .expect("a well-formed Lambda record")
    }

    fn one(record: EventRecord) -> (String, Converted) {
        change_records(&[record]).pop().unwrap()
    }

    #[test]
    fn message_inserts_modifies_and_removes_become_change_records() {
        let (sequence, insert) = one(record(
            "INSERT",
            "100",
            keys(7),
            Some(message_image(7, "Refund please", false, 1)),
            None,
        ));
        assert_eq!(sequence, "100");
        let insert = insert.unwrap().unwrap();
        assert_eq!(insert.kind, ChangeKind::Insert);
        assert_eq!(insert.key.id(), "app_x/2/7");
        assert_eq!(insert.version, 1);
        assert_eq!(insert.new.as_ref().unwrap().body, "Refund please");
        assert!(insert.old.is_none());

        let edit = one(record(
            "MODIFY",
            "101",
            keys(7),
            Some(message_image(7, "Refunded, thanks", false, 2)),
            Some(message_image(7, "Refund please", false, 1)),
        ))
        .1
        .unwrap()
        .unwrap();
        assert_eq!((edit.kind, edit.version), (ChangeKind::Modify, 2));
        assert_eq!(edit.old.as_ref().unwrap().body, "Refund please");
        assert!(
            matches!(edit.to_op().unwrap(), chat_domain::IndexOp::Upsert(d) if d.body == "Refunded, thanks")
        );

        let delete = one(record(
            "MODIFY",
            "102",
            keys(7),
            Some(message_image(7, "", true, 3)),
            Some(message_image(7, "Refunded, thanks", false, 2)),
        ))
        .1
        .unwrap()
        .unwrap();
        assert!(matches!(
            delete.to_op().unwrap(),
            chat_domain::IndexOp::Delete { version: 3, .. }
        ));

        let remove = one(record(
            "REMOVE",
            "103",
            keys(7),
            None,
            Some(message_image(7, "", true, 3)),
        ))
        .1
        .unwrap()
        .unwrap();
        assert_eq!((remove.kind, remove.version), (ChangeKind::Remove, 4));
        assert!(matches!(
            remove.to_op().unwrap(),
            chat_domain::IndexOp::Delete { version: 4, .. }
        ));
    }

    #[test]
    fn file_names_are_searchable_text_after_the_body_until_the_delete() {
        let files = json!({"L": [
            {"M": {"fileName": {"S": "invoice-4471.pdf"}, "contentType": {"S": "application/pdf"},
                   "size": {"N": "5120"}}},
            {"M": {"fileName": {"S": "parcel.jpg"}, "contentType": {"S": "image/jpeg"},
                   "size": {"N": "482113"}, "width": {"N": "1200"}, "height": {"N": "900"}}}
        ]});
        let mut sent = message_image(7, "See attached", false, 1);
        sent["attachments"] = json!({"N": "2"});
        sent["files"] = files.clone();
        let insert = one(record("INSERT", "100", keys(7), Some(sent.clone()), None))
            .1
            .unwrap()
            .unwrap();
        assert!(matches!(insert.to_op().unwrap(),
            chat_domain::IndexOp::Upsert(d) if d.body == "See attached\ninvoice-4471.pdf\nparcel.jpg"));
        // Only files: the names alone.
        let mut only_files = message_image(8, "", false, 1);
        only_files["files"] = files;
        let insert = one(record("INSERT", "101", keys(8), Some(only_files), None))
            .1
            .unwrap()
            .unwrap();
        assert_eq!(insert.new.unwrap().body, "invoice-4471.pdf\nparcel.jpg");
        // The delete removes the files with the body: a tombstone, as without files.
        let mut deleted = message_image(7, "", true, 2);
        deleted["attachments"] = json!({"N": "2"});
        let delete = one(record(
            "MODIFY",
            "102",
            keys(7),
            Some(deleted),
            Some(sent.clone()),
        ))
        .1
        .unwrap()
        .unwrap();
        assert!(matches!(
            delete.to_op().unwrap(),
            chat_domain::IndexOp::Delete { version: 2, .. }
        ));
        // A file that is not a file's map is malformed.
        let mut bad = sent;
        bad["files"] = json!({"L": [{"S": "invoice.pdf"}]});
        assert!(
            one(record("INSERT", "103", keys(7), Some(bad), None))
                .1
                .is_err()
        );
    }

    #[test]
    fn other_item_types_are_skipped() {
        let chat = json!({
            "PK": {"S": "CHAT#app_x#2"}, "SK": {"S": "MSG#META"}, "type": {"S": "CHAT"},
            "messagesCount": {"N": "7"}
        });
        let cmid = json!({
            "PK": {"S": "CHAT#app_x#2"}, "SK": {"S": "CMID#k1"}, "type": {"S": "CMID"},
            "clientMessageId": {"S": "k1"}, "number": {"N": "7"}
        });
        let app = json!({"PK": {"S": "APP#app_x"}, "SK": {"S": "APP"}, "type": {"S": "APP"}});
        let read_mark = json!({
            "PK": {"S": "CHAT#app_x#2"}, "SK": {"S": "READ#agent-1"}, "type": {"S": "READ"},
            "readerId": {"S": "agent-1"}, "lastRead": {"N": "7"}
        });
        let counter = json!({
            "PK": {"S": "TEAMUNREAD#app_x#2"}, "SK": {"S": "UNREAD"}, "type": {"S": "UNREAD"},
            "totalUnread": {"N": "3"}, "unreadChats": {"N": "1"}
        });
        let key_only = json!({"PK": {"S": "CUSTUNREAD#app_x#c"}, "SK": {"S": "UNREAD"}});
        let presence = || {
            json!({
                "PK": {"S": "PRESENCE#3"}, "SK": {"S": "MSG#C#0123456789"}, "type": {"S": "PRESENCE"},
                "token": {"S": "MSG"}, "userId": {"S": "0123456789"}, "role": {"S": "CUSTOMER"},
                "status": {"S": "ONLINE"}, "lastSeenAt": {"N": "1700000000000"},
                "expiresAt": {"N": "1700000090000"}, "version": {"N": "1"},
                "ttl": {"N": "1700086490"}
            })
        };
        for (name, image) in [
            ("MODIFY", chat),
            ("INSERT", cmid),
            ("REMOVE", app),
            ("INSERT", read_mark),
            ("MODIFY", counter),
            ("INSERT", key_only),
            // A lease written, and deleted by the sweep or by time to live.
            ("INSERT", presence()),
            ("REMOVE", presence()),
        ] {
            let (new, old) = if name == "REMOVE" {
                (None, Some(image))
            } else {
                (Some(image), None)
            };
            let (_, converted) = one(record(name, "5", json!({}), new, old));
            assert!(converted.unwrap().is_none(), "{name}");
        }
    }

    #[test]
    fn malformed_records_are_errors_of_their_own() {
        let mut no_version = message_image(7, "hi", false, 1);
        no_version.as_object_mut().unwrap().remove("version");
        let mut bad_number = message_image(7, "hi", false, 1);
        bad_number["number"] = json!({"S": "seven"});
        let batch = [
            record("INSERT", "1", keys(7), Some(no_version), None),
            record("INSERT", "2", keys(7), Some(bad_number), None),
            record(
                "UPSERT",
                "3",
                keys(7),
                Some(message_image(7, "hi", false, 1)),
                None,
            ),
            record("MODIFY", "4", keys(7), None, None),
            record(
                "INSERT",
                "5",
                keys(8),
                Some(message_image(7, "hi", false, 1)),
                None,
            ),
            record(
                "REMOVE",
                "6",
                keys(7),
                None,
                Some(message_image(7, "hi", false, 0)),
            ),
            record(
                "MODIFY",
                "7",
                keys(7),
                None,
                Some(message_image(7, "hi", false, 1)),
            ),
            record(
                "INSERT",
                "8",
                keys(7),
                Some(json!({"PK": {"S": "x"}})),
                None,
            ),
            record(
                "INSERT",
                "9",
                keys(7),
                Some(message_image(7, "ok", false, 1)),
                None,
            ),
        ];
        let converted = change_records(&batch);
        let sequences: Vec<&str> = converted.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(sequences, ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        for (sequence, result) in &converted[..8] {
            assert!(result.is_err(), "record {sequence} is malformed");
        }
        assert!(converted[8].1.as_ref().unwrap().is_some());

        let mut no_sequence = serde_json::to_value(&batch[8]).unwrap();
        no_sequence["dynamodb"]
            .as_object_mut()
            .unwrap()
            .remove("SequenceNumber");
        let (sequence, result) = one(serde_json::from_value(no_sequence).unwrap());
        assert_eq!(sequence, "");
        assert!(result.is_err());
    }
}
