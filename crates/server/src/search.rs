//! Search in the dev server: the tantivy index next to the database (or in memory), the
//! outbox indexer task that feeds it, and the `reindex` command.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chat_domain::{AppToken, ChatNumber, SearchIndex};
use chat_embedded::SqliteStore;
use chat_embedded::feed::{IndexerConfig, run_indexer};
use chat_search_tantivy::{Opened, TantivyIndex};
use tokio::sync::watch;

/// How long shutdown waits for the indexer's last drain. What is left stays queued in the
/// outbox and is indexed at the next start.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The running search: the index and its indexer task.
pub struct Search {
    index: Arc<TantivyIndex>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Search {
    /// Opens the index in `dir` (`None`: in memory) and starts indexing the store's outbox.
    /// A new index (first start, deleted directory, older layout) is rebuilt from the store.
    pub async fn start(store: Arc<SqliteStore>, dir: Option<&Path>) -> Result<Search, String> {
        let index = match dir {
            None => TantivyIndex::in_memory().map_err(|e| e.to_string())?,
            Some(dir) => {
                let (index, opened) = TantivyIndex::open(dir)
                    .map_err(|e| format!("cannot open the search index: {e}"))?;
                if opened == Opened::Created {
                    let queued = store
                        .enqueue_reindex(None, None)
                        .await
                        .map_err(|e| format!("cannot queue the search rebuild: {e}"))?;
                    if queued > 0 {
                        tracing::info!(queued, "new search index: rebuilding it from the store");
                    }
                }
                index
            }
        };
        let index = Arc::new(index);
        let (stop, stopped) = watch::channel(false);
        let feed: Arc<dyn SearchIndex> = index.clone();
        let task = tokio::spawn(run_indexer(store, feed, IndexerConfig::default(), stopped));
        Ok(Search { index, stop, task })
    }

    pub fn index(&self) -> Arc<dyn SearchIndex> {
        self.index.clone()
    }

    /// Stops the indexer after one last drain of the outbox (bounded by a timeout).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the search indexer failed"),
            Err(_) => tracing::warn!("the search indexer did not finish in time; its queue stays"),
        }
    }
}

/// `chat-server reindex`: queues the messages of the whole store, an application or one
/// chat for indexing. The running server picks them up within its poll interval (its
/// writes go on meanwhile); a stopped one indexes them at its next start.
pub async fn reindex(db: &Path, app: Option<&str>, chat: Option<i64>) -> Result<u64, String> {
    let app = app
        .map(AppToken::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    let chat = chat
        .map(ChatNumber::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    if chat.is_some() && app.is_none() {
        return Err("--chat needs --app".into());
    }
    if !db.exists() {
        return Err(format!("no database at {}", db.display()));
    }
    let store = SqliteStore::open(db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let queued = store
        .enqueue_reindex(app, chat)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await.map_err(|e| e.to_string())?;
    Ok(queued)
}
