//! The dev server's sweep of expired presence leases: every [`SWEEP_EVERY`] it ends the
//! leases that ran out and publishes what that changed (OFFLINE presences, chats no longer
//! viewed, availability) to its subscribers, as the scheduled function does on AWS (where it
//! runs every minute: the dev server announces an expiry sooner, never differently).

use std::sync::Arc;
use std::time::Duration;

use chat_appsync::Registry;
use chat_domain::DomainError;

use crate::schema::Api;
use crate::shutdown::Shutdown;

/// How often the dev server sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Batches one sweep ends at most; the next sweep goes on.
const MAX_BATCHES: usize = 20;

/// One sweep: ends the expired leases (batch after batch while batches come full, at most
/// [`MAX_BATCHES`]) and publishes their events to the hub; how many events.
pub async fn sweep_once(registry: &Registry, api: &Api) -> Result<usize, DomainError> {
    let publish = |events: Vec<chat_appsync::Publication>| {
        for event in events {
            api.hub.publish(event.mutation, event.event);
        }
        std::future::ready(())
    };
    let report =
        chat_appsync::presence::sweep(registry.service(), MAX_BATCHES, Duration::MAX, publish)
            .await;
    if let Some(metrics) = &api.metrics {
        metrics.presence_swept(
            report
                .as_ref()
                .map(|r| (r.found, r.published))
                .map_err(|_| ()),
        );
    }
    Ok(report?.published)
}

/// Sweeps every [`SWEEP_EVERY`] until the server stops.
pub fn spawn(registry: Arc<Registry>, api: Api, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(error) = sweep_once(&registry, &api).await {
                        tracing::error!(%error, "presence sweep failed; the next one retries");
                    }
                }
                _ = shutdown.stopping() => return,
            }
        }
    });
}
