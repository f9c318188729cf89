//! Assignment: who handles a chat, and the agents' inbox filters.
//!
//! - A chat has an optional **assignee** (an agent's user id) and an optional **team** (a
//!   name). Any AGENT of the application assigns, unassigns, takes (assigns to itself) and
//!   transfers (assigns to another) with one operation, [`ChatService::assign_chat`]; a
//!   CUSTOMER may not (Forbidden).
//! - A CUSTOMER sees only whether its chat has an agent (`hasAgent`): never an agent's id
//!   nor the team (the wire layer renders a chat per role; the product has no display
//!   names). Filters by assignee or team are for agents only.
//! - An assignment is a change of the chat: it moves `updatedAt` (not the inbox order, which
//!   is last activity) and goes out like any chat change (the agents' `onChat` feed, the
//!   `chat.updated` webhook event).
//! - It is not a message on the chat's timeline: messages are numbered, counted in
//!   `messagesCount` and in every unread counter, and a customer's badge would light up for
//!   an internal hand-over. The chat's current assignee is what clients show.
//! - "My unread" ([`crate::UnreadSummary::assigned_unread`]): the agents' unread (what no
//!   agent has read) over the chats assigned to the caller, kept in a per-agent counter
//!   moved in the same write as every send, read and assignment that changes it.

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};
use crate::model::*;
use crate::service::{ChatService, Page, user_of};
use crate::store::{Assignment, ChatCursor, ChatQuery};

/// Team names: 1..=64 characters after trimming.
pub const TEAM_MAX_CHARS: usize = 64;

/// A team's name: trimmed, 1..=64 characters, no control characters and no `#` (a
/// separator of the DynamoDB keys that hold it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Team(String);

impl Team {
    /// `Ok(None)` for a blank name (no team).
    pub fn parse(raw: &str) -> Result<Option<Self>> {
        let team = raw.trim();
        if team.is_empty() {
            return Ok(None);
        }
        if team.chars().count() > TEAM_MAX_CHARS {
            return Err(DomainError::bad_input(format!(
                "team must be at most {TEAM_MAX_CHARS} characters"
            )));
        }
        if team
            .chars()
            .any(|c| c.is_control() || c == '#' || is_invisible(c))
        {
            return Err(DomainError::bad_input(
                "team must not contain control or invisible characters or #",
            ));
        }
        Ok(Some(Team(team.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which chats an inbox filter keeps by assignee.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum AssigneeFilter {
    /// Every chat, assigned or not.
    #[default]
    Any,
    /// Chats without an assignee.
    Unassigned,
    /// Chats assigned to this agent (`ME` is the caller).
    Agent(UserId),
}

/// The inbox filter of `chats`, after validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatFilter {
    pub assignee: AssigneeFilter,
    /// Only chats of this team (with any assignee).
    pub team: Option<Team>,
}

/// The `filter` argument of `chats` before validation: `assignee` is `ME`, `UNASSIGNED`,
/// `ANY` or an agent's user id.
#[derive(Debug, Clone, Default)]
pub struct ChatFilterArgs {
    pub assignee: Option<String>,
    pub team: Option<String>,
    pub status: Option<ChatStatus>,
}

impl ChatFilter {
    fn parse(args: &ChatFilterArgs, me: &UserId) -> Result<ChatFilter> {
        let assignee = match args.assignee.as_deref() {
            None | Some("ANY") => AssigneeFilter::Any,
            Some("ME") => AssigneeFilter::Agent(me.clone()),
            Some("UNASSIGNED") => AssigneeFilter::Unassigned,
            Some(id) => AssigneeFilter::Agent(UserId::parse(id).map_err(|e| {
                DomainError::bad_input(format!(
                    "filter.assignee must be ME, UNASSIGNED, ANY or an agent's user id: {}",
                    e.public_message()
                ))
            })?),
        };
        let team = args.team.as_deref().map(Team::parse).transpose()?.flatten();
        if team.is_some() && assignee != AssigneeFilter::Any {
            return Err(DomainError::bad_input(
                "filter by team or by assignee, not both (a team's list holds every assignee)",
            ));
        }
        Ok(ChatFilter { assignee, team })
    }

    /// What the page token is bound to.
    fn context(&self) -> String {
        let assignee = match &self.assignee {
            AssigneeFilter::Any => "*".to_owned(),
            AssigneeFilter::Unassigned => "-".to_owned(),
            AssigneeFilter::Agent(id) => format!("@{}", id.as_str()),
        };
        format!(
            "{assignee}\0{}",
            self.team.as_ref().map_or("", Team::as_str)
        )
    }
}

impl ChatService {
    /// The inbox: chats of the application, most recent activity first, filtered by status
    /// and (agents only) by assignee or team. A CUSTOMER sees only its own chats and may not
    /// filter by assignee or team.
    pub async fn inbox(
        &self,
        caller: &crate::service::Caller,
        app: &AppToken,
        args: &ChatFilterArgs,
        limit: PageSize,
        next_token: Option<&str>,
    ) -> Result<Page<Chat>> {
        let user = user_of(caller, app)?;
        let filter = ChatFilter::parse(args, &user.user_id)?;
        if user.role == Role::Customer && filter != ChatFilter::default() {
            return Err(DomainError::Forbidden(
                "only agents filter chats by assignee or team".into(),
            ));
        }
        let customer = (user.role == Role::Customer).then(|| user.user_id.clone());
        // The token is bound to everything that shapes the list; the unfiltered list keeps
        // the binding it always had, so its tokens stay valid.
        let mut context = format!(
            "chats\0{}\0{}\0{}",
            app,
            customer.as_ref().map_or("", UserId::as_str),
            args.status.map_or("", ChatStatus::as_str)
        );
        if filter != ChatFilter::default() {
            context.push('\0');
            context.push_str(&filter.context());
        }
        let after = next_token
            .map(|t| self.pages().decode::<ChatCursor>(&context, t))
            .transpose()?;
        let query = ChatQuery {
            app: app.clone(),
            customer,
            status: args.status,
            filter,
            after,
            limit: limit.get() + 1,
        };
        let mut items = self.store().chats(&query).await?;
        let next_token = if items.len() > limit.get() as usize {
            items.truncate(limit.get() as usize);
            items.last().map(|last| {
                self.pages().encode(
                    &context,
                    &ChatCursor {
                        last_activity_at: last.last_activity_at,
                        number: last.number,
                    },
                )
            })
        } else {
            None
        };
        Ok(Page { items, next_token })
    }

    /// Assigns the chat to `assignee` (`None`: unassigns; the caller's own id: takes it;
    /// another agent's: transfers it) and sets its team (`team: None` leaves it,
    /// `Some(None)` clears it). AGENT only; a chat of another application is NotFound.
    pub async fn assign_chat(
        &self,
        caller: &crate::service::Caller,
        app: &AppToken,
        number: ChatNumber,
        assignee: Option<UserId>,
        team: Option<Option<Team>>,
    ) -> Result<Chat> {
        let user = user_of(caller, app)?;
        if user.role != Role::Agent {
            return Err(DomainError::Forbidden(
                "only agents may assign chats".into(),
            ));
        }
        self.store()
            .assign_chat(Assignment {
                scope: user.scope(number),
                assignee,
                team,
                now: self.now(),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> UserId {
        UserId::parse("agent-1").unwrap()
    }

    #[test]
    fn filters_parse_me_unassigned_any_and_ids() {
        let parse = |assignee: Option<&str>, team: Option<&str>| {
            ChatFilter::parse(
                &ChatFilterArgs {
                    assignee: assignee.map(str::to_owned),
                    team: team.map(str::to_owned),
                    status: None,
                },
                &me(),
            )
        };
        assert_eq!(parse(None, None).unwrap(), ChatFilter::default());
        assert_eq!(parse(Some("ANY"), None).unwrap(), ChatFilter::default());
        assert_eq!(
            parse(Some("ME"), None).unwrap().assignee,
            AssigneeFilter::Agent(me())
        );
        assert_eq!(
            parse(Some("UNASSIGNED"), None).unwrap().assignee,
            AssigneeFilter::Unassigned
        );
        assert_eq!(
            parse(Some("bob"), None).unwrap().assignee,
            AssigneeFilter::Agent(UserId::parse("bob").unwrap())
        );
        assert!(parse(Some("a b"), None).is_err());
        assert_eq!(
            parse(None, Some(" Billing "))
                .unwrap()
                .team
                .unwrap()
                .as_str(),
            "Billing"
        );
        assert!(parse(Some("ME"), Some("Billing")).is_err());
        // A blank team is no team filter.
        assert_eq!(parse(Some("ME"), Some(" ")).unwrap().team, None);
    }

    #[test]
    fn team_names_are_bounded_and_free_of_separators() {
        assert!(Team::parse("a#b").is_err());
        assert!(Team::parse("a\u{200B}b").is_err());
        assert!(Team::parse(&"t".repeat(65)).is_err());
        assert!(Team::parse(&"t".repeat(64)).unwrap().is_some());
        assert_eq!(Team::parse("  ").unwrap(), None);
    }

    #[test]
    fn page_tokens_are_bound_to_the_filter() {
        let a = ChatFilter {
            assignee: AssigneeFilter::Agent(me()),
            team: None,
        };
        let b = ChatFilter {
            assignee: AssigneeFilter::Unassigned,
            team: None,
        };
        assert_ne!(a.context(), b.context());
        assert_ne!(a.context(), ChatFilter::default().context());
    }
}
