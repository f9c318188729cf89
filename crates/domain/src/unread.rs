//! Unread counts from read watermarks, and the precomputed counters behind the badges.
//!
//! Every reader of a chat has a **watermark**: the highest message number it has read. The
//! chat's customer has one ([`ReadMarks::customer`]); every agent has its own, and the agents
//! share a team watermark ([`ReadMarks::agents`]: the highest number any agent has read).
//!
//! - unread for a role = the chat's last message number - that role's watermark;
//! - sending moves the sender's watermark (an agent's: its own and the team's) to the sent
//!   number, so what is unread for a role is always the other role's messages;
//! - watermarks only move forward;
//! - a deleted message keeps its number and shows as a tombstone, so it stays counted until
//!   read (counting it out would make "marked read up to n" depend on which of the messages
//!   below n were deleted, a per-message scan);
//! - per-reader totals (the agents' inbox badge over an application, a customer's badge over
//!   its chats) are counters, moved in the same write as the watermark or the send that
//!   changes them, by exactly [`CounterChange::between`] the chat's marks before and after.
//!   Both stores apply the same arithmetic, so the counters equal a recount at all times.

use crate::model::{AppToken, ChatNumber, Role, UserId};

/// A chat's read position: its last message number and the two role watermarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadMarks {
    /// The last message number (= messages ever sent).
    pub last: u32,
    /// The customer's watermark.
    pub customer: u32,
    /// The agents' team watermark: the highest number any agent has read.
    pub agents: u32,
}

impl ReadMarks {
    pub fn watermark(&self, role: Role) -> u32 {
        match role {
            Role::Customer => self.customer,
            Role::Agent => self.agents,
        }
    }

    /// What `role` has not read: for a CUSTOMER the agents' messages after its watermark, for
    /// AGENT the customer's messages no agent has read.
    pub fn unread_for(&self, role: Role) -> u32 {
        self.last.saturating_sub(self.watermark(role))
    }

    fn with_watermark(mut self, role: Role, watermark: u32) -> ReadMarks {
        match role {
            Role::Customer => self.customer = watermark,
            Role::Agent => self.agents = watermark,
        }
        self
    }

    /// After `role` sent message `last + 1`: the sender has read it.
    pub fn after_send(self, role: Role) -> ReadMarks {
        let sent = self.last + 1;
        ReadMarks { last: sent, ..self }.with_watermark(role, sent)
    }

    /// After `role` read up to `up_to` (at most [`ReadMarks::last`]); never backwards.
    pub fn after_read(self, role: Role, up_to: u32) -> ReadMarks {
        let watermark = self.watermark(role).max(up_to.min(self.last));
        self.with_watermark(role, watermark)
    }
}

/// How one chat contributes to a reader's counters: its unread messages, and whether it
/// counts as an unread chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadDelta {
    pub messages: i64,
    pub chats: i64,
}

impl UnreadDelta {
    /// What one chat with `marks` adds to `role`'s counter.
    pub fn of(marks: ReadMarks, role: Role) -> UnreadDelta {
        let unread = marks.unread_for(role);
        UnreadDelta {
            messages: i64::from(unread),
            chats: i64::from(unread > 0),
        }
    }

    pub fn negated(self) -> UnreadDelta {
        UnreadDelta {
            messages: -self.messages,
            chats: -self.chats,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.messages == 0 && self.chats == 0
    }
}

/// What a change of one chat's marks adds to the two counters it feeds: the agents' team
/// counter of the application and the counter of the chat's customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterChange {
    pub agents: UnreadDelta,
    pub customer: UnreadDelta,
}

impl CounterChange {
    pub fn between(before: ReadMarks, after: ReadMarks) -> CounterChange {
        let delta = |role| {
            let (b, a) = (UnreadDelta::of(before, role), UnreadDelta::of(after, role));
            UnreadDelta {
                messages: a.messages - b.messages,
                chats: a.chats - b.chats,
            }
        };
        CounterChange {
            agents: delta(Role::Agent),
            customer: delta(Role::Customer),
        }
    }

    /// The counter of `role`'s side.
    pub fn of(&self, role: Role) -> UnreadDelta {
        match role {
            Role::Agent => self.agents,
            Role::Customer => self.customer,
        }
    }
}

/// What `markChatRead` answers: the reader's own watermark after the call, and what is
/// unread for it (an AGENT: what no agent has read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReceipt {
    pub app: AppToken,
    pub chat_number: ChatNumber,
    pub reader_id: UserId,
    pub reader_role: Role,
    pub last_read_number: u32,
    pub unread_count: u32,
}

/// A reader's badge: for a CUSTOMER over its own chats, for AGENT over the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadSummary {
    pub app: AppToken,
    pub total_unread: u64,
    pub unread_chats: u64,
    /// AGENT: the agents' unread over the chats assigned to the caller ("my unread"); 0 for
    /// a CUSTOMER.
    pub assigned_unread: u64,
    pub assigned_unread_chats: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(last: u32, customer: u32, agents: u32) -> ReadMarks {
        ReadMarks {
            last,
            customer,
            agents,
        }
    }

    #[test]
    fn a_send_is_read_by_its_sender_and_unread_for_the_other_side() {
        let after = marks(3, 1, 3).after_send(Role::Customer);
        assert_eq!(after, marks(4, 4, 3));
        assert_eq!(after.unread_for(Role::Customer), 0);
        assert_eq!(after.unread_for(Role::Agent), 1);
        let change = CounterChange::between(marks(3, 1, 3), after);
        assert_eq!(
            change.customer,
            UnreadDelta {
                messages: -2,
                chats: -1
            }
        );
        assert_eq!(
            change.agents,
            UnreadDelta {
                messages: 1,
                chats: 1
            }
        );
    }

    #[test]
    fn watermarks_only_move_forward_and_stop_at_the_last_message() {
        let m = marks(10, 6, 8);
        assert_eq!(m.after_read(Role::Customer, 4), m);
        assert_eq!(m.after_read(Role::Customer, 9), marks(10, 9, 8));
        assert_eq!(m.after_read(Role::Agent, 50), marks(10, 6, 10));
        assert!(
            CounterChange::between(m, m.after_read(Role::Agent, 3)) == CounterChange::default()
        );
    }

    #[test]
    fn a_further_message_in_an_unread_chat_adds_no_unread_chat() {
        let change =
            CounterChange::between(marks(5, 5, 2), marks(5, 5, 2).after_send(Role::Customer));
        assert_eq!(
            change.agents,
            UnreadDelta {
                messages: 1,
                chats: 0
            }
        );
        assert!(change.customer.is_zero());
    }
}
