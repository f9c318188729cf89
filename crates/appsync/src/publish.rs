//! Real-time events, built by the server.
//!
//! Subscriptions listen only to the internal publish mutations of `schema.graphql`
//! (`publishMessageSent` ...), never to the client-facing ones: a client shapes its
//! mutation's answer (aliases, fragments), so routing events by that answer would let it
//! forge events into other chats and applications. After a committed write, a resolver
//! returns the whole object it wrote as a [`Publication`]; the runtime delivers it:
//!
//! - on AWS, the resolver function calls the publish mutation on AppSync with IAM and the
//!   fixed selection set of [`document`] (every field), and AppSync fans it out;
//! - on the dev server, the server hands it to its subscription hub in process.
//!
//! Either way a subscriber receives its own selection over the complete object.

use serde_json::Value;

/// A new message (sendMessage): `onMessage` and `onInboxMessage`.
pub const MESSAGE_SENT: &str = "publishMessageSent";
/// An edited or deleted message: `onMessage`.
pub const MESSAGE_CHANGED: &str = "publishMessageChanged";
/// A new or updated chat, as the agents see it: `onChat`.
pub const CHAT: &str = "publishChat";
/// A moved read watermark: `onReadReceipt`.
pub const READ_RECEIPT: &str = "publishReadReceipt";

/// A presence that changed status or chat, started or ended: `onPresence`.
pub const PRESENCE: &str = "publishPresence";
/// A change in how many agents are online or away: `onAvailability`.
pub const AVAILABILITY: &str = "publishAvailability";
/// Someone started or stopped looking at a chat: `onChatViewer`.
pub const CHAT_VIEWER: &str = "publishChatViewer";
/// Someone is typing: `onTyping`.
pub const TYPING: &str = "publishTyping";

/// Every publish mutation, with its argument's input type.
pub const MUTATIONS: [(&str, &str); 8] = [
    (MESSAGE_SENT, "MessageEventInput"),
    (MESSAGE_CHANGED, "MessageEventInput"),
    (CHAT, "ChatEventInput"),
    (READ_RECEIPT, "ReadReceiptEventInput"),
    (PRESENCE, "PresenceEventInput"),
    (AVAILABILITY, "AvailabilityEventInput"),
    (CHAT_VIEWER, "ChatViewerEventInput"),
    (TYPING, "TypingEventInput"),
];

/// Whether a schema field with these directives (their names) is IAM only, as AppSync
/// reads it with Lambda as the default mode and IAM as an additional one: `@aws_iam`
/// without `@aws_lambda`. The publish mutations are; clients cannot call such a field.
pub fn is_iam_only<'a>(directives: impl IntoIterator<Item = &'a str>) -> bool {
    let (mut iam, mut lambda) = (false, false);
    for directive in directives {
        iam |= directive == "aws_iam";
        lambda |= directive == "aws_lambda";
    }
    iam && !lambda
}

const MESSAGE_FIELDS: &str = "appToken chatNumber number body senderId senderRole \
    clientMessageId createdAt editedAt deleted \
    attachments { name contentType size url width height }";

/// One event to publish: the publish mutation and its `event` argument (the complete
/// object, as `wire` renders it).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub mutation: &'static str,
    pub event: Value,
}

/// The fixed document the publish mutation is called with: `$event` in, every field of the
/// returned object out (tests check it against `schema.graphql`).
pub fn document(mutation: &str) -> Option<String> {
    let (_, input) = MUTATIONS.iter().find(|(m, _)| *m == mutation)?;
    let selection = match mutation {
        MESSAGE_SENT | MESSAGE_CHANGED => MESSAGE_FIELDS.to_owned(),
        CHAT => format!(
            "appToken number customerId subject status messagesCount lastMessage {{ {MESSAGE_FIELDS} }} \
             lastMessageAt unreadCount customerLastRead agentsLastRead createdAt updatedAt \
             hasAgent assigneeId team"
        ),
        READ_RECEIPT => {
            "appToken chatNumber readerId readerRole lastReadNumber unreadCount".to_owned()
        }
        PRESENCE => "appToken userId role status chatNumber lastSeenAt expiresAt".to_owned(),
        AVAILABILITY => "appToken agentsOnline agentsAway".to_owned(),
        CHAT_VIEWER => "appToken chatNumber userId role viewing at".to_owned(),
        TYPING => "appToken chatNumber userId role at".to_owned(),
        _ => return None,
    };
    Some(format!(
        "mutation Publish($event: {input}!) {{ {mutation}(event: $event) {{ {selection} }} }}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_publish_mutation_has_a_document_naming_it_once() {
        for (mutation, input) in MUTATIONS {
            let document = document(mutation).expect("a document");
            assert!(document.contains(&format!("($event: {input}!)")));
            assert_eq!(document.matches(mutation).count(), 1, "{document}");
        }
        assert_eq!(document("sendMessage"), None);
    }

    #[test]
    fn iam_only_means_aws_iam_without_aws_lambda() {
        assert!(is_iam_only(["aws_iam"]));
        assert!(!is_iam_only(["aws_iam", "aws_lambda"]));
        assert!(!is_iam_only(["aws_lambda"]));
        assert!(!is_iam_only(["aws_subscribe"]));
    }
}
