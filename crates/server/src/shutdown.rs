//! Graceful shutdown of WebSocket sessions.
//!
//! axum's graceful shutdown waits for in-flight HTTP requests, but a WebSocket leaves
//! hyper's bookkeeping at its upgrade: without this, SIGTERM would end the process under its
//! sessions and clients would see a dropped TCP connection instead of a close frame. Each
//! session holds a [`Session`] and watches [`Shutdown::stopping`]; on SIGTERM the server
//! calls [`Shutdown::begin`], every session sends a close frame ([`GOING_AWAY`]) and ends,
//! and the server waits for them (bounded) before it exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// The close code a session gets when the server stops (RFC 6455: "going away").
pub const GOING_AWAY: u16 = 1001;
/// The close reason sent with [`GOING_AWAY`].
pub const GOING_AWAY_REASON: &str = "server shutting down: reconnect";

#[derive(Clone)]
pub struct Shutdown(Arc<Inner>);

struct Inner {
    stopping: watch::Sender<bool>,
    sessions: AtomicUsize,
    ended: Notify,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(Inner {
            stopping: watch::Sender::new(false),
            sessions: AtomicUsize::new(0),
            ended: Notify::new(),
        }))
    }
}

impl Shutdown {
    /// Registers a live session until the returned guard drops.
    pub fn session(&self) -> Session {
        self.0.sessions.fetch_add(1, Ordering::SeqCst);
        Session(self.clone())
    }

    /// Tells every session to close.
    pub fn begin(&self) {
        self.0.stopping.send_replace(true);
    }

    /// Resolves once [`Shutdown::begin`] has been called (at once if it already was).
    pub async fn stopping(&self) {
        let mut stopping = self.0.stopping.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Sessions still open.
    pub fn live_sessions(&self) -> usize {
        self.0.sessions.load(Ordering::SeqCst)
    }

    /// Waits until every session has ended, at most `bound`; `false` if some remain.
    pub async fn sessions_ended(&self, bound: Duration) -> bool {
        let wait = async {
            loop {
                let ended = self.0.ended.notified();
                if self.live_sessions() == 0 {
                    return;
                }
                ended.await;
            }
        };
        tokio::time::timeout(bound, wait).await.is_ok()
    }
}

/// A live WebSocket session (see [`Shutdown::session`]).
pub struct Session(Shutdown);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.0.sessions.fetch_sub(1, Ordering::SeqCst);
        self.0.0.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_sessions_to_end_after_begin() {
        let shutdown = Shutdown::default();
        let session = shutdown.session();
        let watcher = shutdown.clone();
        let task = tokio::spawn(async move {
            watcher.stopping().await;
            drop(session);
        });
        assert!(!shutdown.sessions_ended(Duration::from_millis(20)).await);
        shutdown.begin();
        assert!(shutdown.sessions_ended(Duration::from_secs(5)).await);
        task.await.unwrap();
        assert_eq!(shutdown.live_sessions(), 0);
        // A session opened after the signal sees it at once.
        let late = shutdown.session();
        tokio::time::timeout(Duration::from_secs(1), shutdown.stopping())
            .await
            .unwrap();
        drop(late);
    }
}
