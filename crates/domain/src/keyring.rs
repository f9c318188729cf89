//! Which secrets verify an application's user tokens right now, cached per process.
//!
//! Secrets are derived from the server key and the application's secret generation
//! ([`crate::secrets`]), so verifying a token needs only the generation, not a stored secret.
//! After [`rotateApplicationSecret`](crate::ChatService::rotate_application_secret) the new
//! generation verifies, and the replaced one too until its grace period ends.
//!
//! Verifying a token must not cost a store read per request, so each process keeps what it
//! read for [`SECRET_CACHE_TTL_MS`]: a rotation made by another process (another Lambda
//! instance) reaches this one within that time; one made through this process's own service
//! at once. Unknown applications are cached too, so a flood of tokens naming made-up
//! applications costs one read per name per TTL, and the cache is bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::limits::{SECRET_CACHE_MAX_APPS, SECRET_CACHE_TTL_MS};
use crate::model::{AppToken, Application, Timestamp};

/// An application's secret generations, as read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generations {
    pub current: u32,
    pub previous_expires_at: Option<Timestamp>,
}

impl Generations {
    pub fn of(application: &Application) -> Self {
        Generations {
            current: application.secret_generation,
            previous_expires_at: application.previous_secret_expires_at,
        }
    }

    /// The generations that verify at `now`, newest first, each with the moment it stops
    /// (`None`: until the next rotation).
    pub fn verifying(self, now: Timestamp) -> Vec<(u32, Option<Timestamp>)> {
        let mut generations = vec![(self.current, None)];
        if let Some(expires) = self.previous_expires_at
            && expires > now
            && self.current > 1
        {
            generations.push((self.current - 1, Some(expires)));
        }
        generations
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    read_at: Timestamp,
    /// `None`: no such application.
    generations: Option<Generations>,
}

/// The per-process cache. Cheap to consult: one mutex, one hash lookup.
#[derive(Debug, Default)]
pub(crate) struct Keyring {
    entries: Mutex<HashMap<AppToken, Entry>>,
}

impl Keyring {
    /// What was read for `app` less than [`SECRET_CACHE_TTL_MS`] before `now`, if anything.
    pub(crate) fn cached(&self, app: &AppToken, now: Timestamp) -> Option<Option<Generations>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(app)
            .filter(|e| fresh(e, now))
            .map(|e| e.generations)
    }

    pub(crate) fn remember(
        &self,
        app: &AppToken,
        generations: Option<Generations>,
        now: Timestamp,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= SECRET_CACHE_MAX_APPS && !entries.contains_key(app) {
            entries.retain(|_, e| fresh(e, now));
            if entries.len() >= SECRET_CACHE_MAX_APPS {
                entries.clear();
            }
        }
        entries.insert(
            app.clone(),
            Entry {
                read_at: now,
                generations,
            },
        );
    }

    pub(crate) fn forget(&self, app: &AppToken) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(app);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

fn fresh(entry: &Entry, now: Timestamp) -> bool {
    now.0.saturating_sub(entry.read_at.0) < SECRET_CACHE_TTL_MS && entry.read_at <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(n: usize) -> AppToken {
        AppToken::parse(&format!("app_{n}")).unwrap()
    }

    #[test]
    fn the_previous_generation_verifies_only_during_its_grace() {
        let g = Generations {
            current: 3,
            previous_expires_at: Some(Timestamp(1_000)),
        };
        assert_eq!(
            g.verifying(Timestamp(999)),
            vec![(3, None), (2, Some(Timestamp(1_000)))]
        );
        assert_eq!(g.verifying(Timestamp(1_000)), vec![(3, None)]);
        let first = Generations {
            current: 1,
            previous_expires_at: None,
        };
        assert_eq!(first.verifying(Timestamp(0)), vec![(1, None)]);
    }

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let keyring = Keyring::default();
        let g = Some(Generations {
            current: 1,
            previous_expires_at: None,
        });
        keyring.remember(&app(1), g, Timestamp(0));
        assert_eq!(
            keyring.cached(&app(1), Timestamp(SECRET_CACHE_TTL_MS - 1)),
            Some(g)
        );
        assert_eq!(
            keyring.cached(&app(1), Timestamp(SECRET_CACHE_TTL_MS)),
            None
        );
        // A clock that went backwards does not make an entry live forever.
        assert_eq!(keyring.cached(&app(1), Timestamp(-1)), None);
        keyring.remember(&app(2), None, Timestamp(0));
        assert_eq!(keyring.cached(&app(2), Timestamp(1)), Some(None));
        keyring.forget(&app(2));
        assert_eq!(keyring.cached(&app(2), Timestamp(1)), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let keyring = Keyring::default();
        for n in 0..SECRET_CACHE_MAX_APPS + 10 {
            keyring.remember(&app(n), None, Timestamp(0));
            assert!(keyring.len() <= SECRET_CACHE_MAX_APPS);
        }
    }
}
