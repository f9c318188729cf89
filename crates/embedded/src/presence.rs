//! Presence leases in memory, for the single-binary server.
//!
//! Not in SQLite: a lease lives 90 s and is rewritten every minute or so by every client, so
//! 10,000 clients would be a durable, fsynced write every few milliseconds for data that is
//! stale by the time a restart is over. After a restart every lease is gone; clients'
//! next heartbeat (within 30 s) brings each back, announced as a transition like any other.
//! What a client observes otherwise is the DynamoDB store's behaviour (the conformance
//! suite holds both to it).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use chat_domain::{
    AppToken, DomainError, Presence, PresenceCursor, PresenceStore, Result, Role, Timestamp, UserId,
};

/// The leases, per application by (role rank, user id): the listing order of
/// [`PresenceCursor`], so a page is a range.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    leases: Mutex<HashMap<AppToken, BTreeMap<Key, Presence>>>,
}

type Key = (bool, UserId);

fn key(role: Role, user: &UserId) -> Key {
    (role == Role::Customer, user.clone())
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<AppToken, BTreeMap<Key, Presence>>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The user's lease in an application's map, whatever its role, with its key.
fn find<'a>(app: &'a BTreeMap<Key, Presence>, user: &UserId) -> Option<(Key, &'a Presence)> {
    [Role::Agent, Role::Customer].into_iter().find_map(|role| {
        let key = key(role, user);
        app.get(&key).map(|p| (key, p))
    })
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn stored_presence(&self, app: &AppToken, user: &UserId) -> Result<Option<Presence>> {
        let leases = self.leases();
        Ok(leases
            .get(app)
            .and_then(|app| find(app, user))
            .map(|(_, p)| p.clone()))
    }

    async fn put_presence(&self, lease: &Presence, expected: Option<&Presence>) -> Result<()> {
        let mut leases = self.leases();
        let app = leases.entry(lease.app.clone()).or_default();
        let stored = find(app, &lease.user_id).map(|(key, p)| (key, p.version));
        if stored.as_ref().map(|(_, v)| *v) != expected.map(|e| e.version) {
            return Err(DomainError::Conflict(
                "the presence lease changed meanwhile".into(),
            ));
        }
        // A user whose role changed (a new token) keeps one lease.
        if let Some((old, _)) = stored {
            app.remove(&old);
        }
        app.insert(key(lease.role, &lease.user_id), lease.clone());
        Ok(())
    }

    async fn remove_presence(&self, expected: &Presence) -> Result<bool> {
        let mut leases = self.leases();
        let Some(app) = leases.get_mut(&expected.app) else {
            return Ok(false);
        };
        let key = key(expected.role, &expected.user_id);
        if app.get(&key).map(|p| p.version) != Some(expected.version) {
            return Ok(false);
        }
        app.remove(&key);
        if app.is_empty() {
            leases.remove(&expected.app);
        }
        Ok(true)
    }

    async fn presences(
        &self,
        app: &AppToken,
        role: Option<Role>,
        now: Timestamp,
        after: Option<&PresenceCursor>,
        limit: u32,
    ) -> Result<Vec<Presence>> {
        let leases = self.leases();
        let Some(app) = leases.get(app) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(cursor) => Bound::Excluded(key(cursor.role, &cursor.user_id)),
            None => Bound::Unbounded,
        };
        Ok(app
            .range((start, Bound::Unbounded))
            .map(|(_, p)| p)
            // Agents sort first: customers alone skip them, agents alone stop at the first
            // customer.
            .skip_while(|p| role == Some(Role::Customer) && p.role == Role::Agent)
            .take_while(|p| role.is_none_or(|r| p.role == r))
            .filter(|p| p.is_live(now))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn expired_presences(&self, now: Timestamp, limit: u32) -> Result<Vec<Presence>> {
        Ok(self
            .leases()
            .values()
            .flat_map(BTreeMap::values)
            .filter(|p| !p.is_live(now))
            .take(limit as usize)
            .cloned()
            .collect())
    }
}
