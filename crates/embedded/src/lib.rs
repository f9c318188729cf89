//! `chat-embedded`: the [`ChatStore`] on SQLite, for the single-binary server.
//!
//! - Writes go to one writer thread over a bounded queue and are committed in groups
//!   (see the `writer` module); a write is acknowledged only after its transaction
//!   committed with `synchronous=FULL`, so an `Ok` survives `kill -9` and power loss.
//! - Reads run on reader threads of their own, one per read connection, that take reads
//!   from a queue (see [`SqliteStore::read`]); WAL lets them run beside the writer and see
//!   every acknowledged write.
//! - Numbers are allocated by the writer inside the transaction
//!   (`UPDATE ... SET count = count + 1 RETURNING`), each command in its own savepoint, so
//!   they are dense and a failed command consumes none.

mod assignment;
mod attachments;
mod error;
pub mod feed;
mod ops;
mod presence;
mod routing;
mod rows;
mod schema;
mod unread;
mod webhooks;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chat_domain::{
    AgentLoad, AppToken, Application, ApplicationUpdate, Assignment, ChangeRecord, Chat,
    ChatNumber, ChatQuery, ChatScope, ChatStore, ChatUpdate, DomainError, MarkRead, Message,
    MessageBody, MessageChange, MessageNumber, MessageRange, NewApplication, NewChat, NewMessage,
    ReadReceipt, Route, Routed, RoutingStore, Sent, Timestamp, UnreadSummary, UserId, UserIdentity,
};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Notify, mpsc, oneshot};

pub use error::{BatchFailed, StoreError};
pub use presence::MemoryPresence;
pub use schema::SCHEMA_VERSION;

use error::Result as StoreResult;
use writer::{Job, Op, WriteConn};

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Each connection's page cache, in KiB (SQLite's own default is about 2 MiB). The
/// writer's cache keeps its pages from one transaction to the next (no other connection
/// writes), so it fills up to this size as the database grows; a reader's is emptied
/// whenever the writer has committed since its last read. The operating system caches the
/// file anyway: a page missing here costs a read of a cached page, microseconds. With
/// 32 MiB for the writer, a 30-minute soak at 100 requests/s grew with the cache (SQLite's
/// heap 1.5 -> 8.2 MB from minute 2 to 29, RSS 28 -> 40 MiB); with 2 MiB, SQLite's heap
/// stayed at about 3 MB from minute 6 on (docs/loadtest.md, "The SQLite writer's page
/// cache").
const PAGE_CACHE_KIB: i64 = 2_048;

/// A reader thread's connection.
enum ReadConn {
    /// Its own read-only connection to the database file, open for the store's life (WAL:
    /// it never blocks the writer, nor the writer it).
    Owned(Connection),
    /// The in-memory database's one connection, shared with the writer.
    Shared(Arc<Mutex<Connection>>),
}

/// A read for a reader thread: it runs the work and sends the answer itself.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A reader thread: runs the queued reads on its connection one after the other until the
/// queue is closed, then hands the connection back (see `Drop for SqliteStore`). A read
/// that panics is reported (its caller gets an error) and the thread goes on.
fn run_reader(conn: ReadConn, jobs: &Mutex<std::sync::mpsc::Receiver<ReadJob>>) -> ReadConn {
    loop {
        // The lock is held only while waiting for the next job: the other readers wait for
        // it meanwhile, and whoever gets it takes the next read.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return conn };
        let run = std::panic::AssertUnwindSafe(|| match &conn {
            ReadConn::Owned(conn) => in_read_transaction(conn, job),
            ReadConn::Shared(conn) => job(&conn.lock().unwrap_or_else(PoisonError::into_inner)),
        });
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("a sqlite read panicked");
        }
    }
}

/// Runs a read in one transaction: its statements see one snapshot and take the file's
/// shared lock once (each statement on its own would take and release it, two `fcntl`
/// calls each: 8 % of the server's CPU for `messages`, which runs three). A transaction a
/// panicking read left open is rolled back first.
fn in_read_transaction(conn: &Connection, job: ReadJob) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let began = conn
        .prepare_cached("BEGIN")
        .and_then(|mut begin| begin.execute([]))
        .is_ok();
    job(conn);
    if began && !conn.is_autocommit() {
        let ended = conn
            .prepare_cached("COMMIT")
            .and_then(|mut commit| commit.execute([]));
        if let Err(e) = ended {
            tracing::warn!(error = %e, "ending a read transaction failed");
        }
    }
}

/// The SQLite [`ChatStore`]. Dropping it stops the writer thread after the commands
/// already queued (and waits for it); [`SqliteStore::close`] does the same without
/// blocking the async runtime.
pub struct SqliteStore {
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// "file" or "memory", for `Debug`.
    mode: &'static str,
    /// The reader threads' queue (see [`SqliteStore::read`]); closed on drop.
    read_queue: Option<std::sync::mpsc::Sender<ReadJob>>,
    reader_threads: Vec<std::thread::JoinHandle<ReadConn>>,
    /// Woken after every committed write that queued search changes.
    changes: Arc<Notify>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("mode", &self.mode)
            .finish()
    }
}

/// Opening fails before anything is served: say why in the message as well, since the
/// caller typically prints it and exits.
fn open_error(e: impl Into<StoreError>) -> DomainError {
    let e = e.into();
    DomainError::internal(format!("cannot open the sqlite store: {e}"), e)
}

/// Settings every connection to a file gets.
fn configure_common(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    stable_plans(conn)
}

/// The query planner's stability guarantee: a cached statement keeps its plan whatever
/// values are bound. Without it SQLite re-plans a statement whenever a bound value could
/// change the plan — every `LIMIT ?` is one — so each page read re-parsed its SQL (5 % of
/// the server's CPU for `messages`). Every statement here is planned for its index, not
/// for a value.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(|_| ())
}

/// How many read connections (and reader threads) a store on a file has.
fn read_connections() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .clamp(4, 16)
}

/// A read connection to the database file: `query_only`, with the common settings.
fn open_read_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure_common(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, migrates it to [`SCHEMA_VERSION`],
    /// and starts the writer. WAL mode, `synchronous=FULL`, foreign keys on.
    pub fn open(path: &Path) -> Result<Self, DomainError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
        configure_common(&conn).map_err(open_error)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            let why = format!("the database refused WAL mode (journal_mode is {mode})");
            return Err(DomainError::internal(
                format!("cannot open the sqlite store: {why}"),
                why,
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&conn).map_err(open_error)?;

        // A fixed set of connections, one per reader thread, opened here (so that a
        // failure is the caller's error) and kept for the store's life: reopening one
        // would allocate the schema and a page cache anew between other allocations.
        let readers = (0..read_connections())
            .map(|_| open_read_connection(path).map(ReadConn::Owned))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(open_error)?;
        Self::start(WriteConn::Owned(conn), readers, "file")
    }

    /// A database in memory, gone when the store is dropped (`--memory`). It is one
    /// connection shared by the writer and the readers: the only way for every
    /// operation to see one database with ordinary transaction semantics.
    pub fn open_in_memory() -> Result<Self, DomainError> {
        let conn = Connection::open_in_memory().map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_error)?;
        stable_plans(&conn).map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&conn).map_err(open_error)?;
        let conn = Arc::new(Mutex::new(conn));
        Self::start(
            WriteConn::Shared(Arc::clone(&conn)),
            vec![ReadConn::Shared(conn)],
            "memory",
        )
    }

    fn start(
        conn: WriteConn,
        readers: Vec<ReadConn>,
        mode: &'static str,
    ) -> Result<Self, DomainError> {
        let (read_queue, jobs) = std::sync::mpsc::channel::<ReadJob>();
        let jobs = Arc::new(Mutex::new(jobs));
        let reader_threads = readers
            .into_iter()
            .enumerate()
            .map(|(i, read_conn)| {
                let jobs = Arc::clone(&jobs);
                std::thread::Builder::new()
                    .name(format!("chat-sqlite-reader-{i}"))
                    .spawn(move || run_reader(read_conn, &jobs))
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(open_error)?;
        let (queue, rx) = mpsc::channel(writer::QUEUE_CAPACITY);
        let writer = writer::spawn(conn, rx).map_err(open_error)?;
        Ok(SqliteStore {
            queue: Some(queue),
            writer: Some(writer),
            mode,
            read_queue: Some(read_queue),
            reader_threads,
            changes: Arc::new(Notify::new()),
        })
    }

    /// Stops the writer once the queued commands are done and waits for it, off the
    /// async runtime's threads.
    pub async fn close(mut self) -> Result<(), DomainError> {
        self.queue.take();
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let joined = tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| StoreError::Join(e).into_domain("close"))?;
        joined.map_err(|_| {
            DomainError::internal("sqlite store: close failed", "the writer thread panicked")
        })
    }

    async fn write<T, F>(&self, operation: &'static str, work: F) -> Result<T, DomainError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let gone = || StoreError::WriterGone.into_domain(operation);
        let (reply, replied) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(gone)?;
        queue
            .send(Box::new(Op::new(operation, work, reply)))
            .await
            .map_err(|_| gone())?;
        replied.await.map_err(|_| gone())?
    }

    /// Runs `work` on a read connection, on one of the reader threads (one per
    /// connection), and waits for it as a future.
    ///
    /// Reads used to go to Tokio's blocking pool and wait there for a connection: each
    /// waiting read held a thread, and a burst of reads (a stall of the host, a client
    /// retrying) grew the pool by a thread for each: 40 to 120 new threads for 200 reads at
    /// once (`tests/read_slots.rs`), up to 44 threads in a soak (docs/loadtest.md, session
    /// 8). A queue in front of a fixed set of threads keeps the count constant.
    async fn read<T, F>(&self, operation: &'static str, work: F) -> Result<T, DomainError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let gone = || StoreError::ReaderGone.into_domain(operation);
        let (reply, replied) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &Connection| {
            // The caller may have gone (a cancelled request): nobody to tell then.
            let _ = reply.send(work(conn));
        });
        let queue = self.read_queue.as_ref().ok_or_else(gone)?;
        queue.send(job).map_err(|_| gone())?;
        // A dropped reply is a read that panicked (its thread goes on with the next).
        replied
            .await
            .map_err(|_| gone())?
            .map_err(|e| e.into_domain(operation))
    }
}

/// How many messages one reindex command queues per transaction.
const REINDEX_CHUNK: u32 = 5_000;

/// The search outbox: the durable change feed of messages (see [`feed`]).
impl SqliteStore {
    /// Notified after each committed write that queued search changes (in this process;
    /// another process's writes are found by polling).
    pub fn changes(&self) -> Arc<Notify> {
        Arc::clone(&self.changes)
    }

    /// The oldest queued changes, at most `limit`, as change records.
    pub async fn outbox_batch(&self, limit: u32) -> Result<Vec<ChangeRecord>, DomainError> {
        self.read("outbox_batch", move |c| ops::outbox_batch(c, limit))
            .await
    }

    /// Removes indexed changes from the outbox (their `sequence`s). Returns how many were
    /// removed; unknown sequences are ignored (a re-delivered batch).
    pub async fn outbox_ack(&self, sequences: &[String]) -> Result<usize, DomainError> {
        let sequences = sequences
            .iter()
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|e| DomainError::internal("outbox_ack: not an outbox sequence", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write("outbox_ack", move |c| ops::outbox_ack(c, &sequences))
            .await
    }

    /// Changes waiting to be indexed.
    pub async fn outbox_len(&self) -> Result<u64, DomainError> {
        self.read("outbox_len", ops::outbox_len).await
    }

    /// Write commands queued for the writer and not yet taken into a transaction (the one
    /// being committed is not counted); senders wait once it reaches the queue's capacity.
    pub fn writer_queue_depth(&self) -> usize {
        self.queue
            .as_ref()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    /// Queues every message of the scope (the whole store, an application, or one chat)
    /// for indexing at its current version, in transactions of a few thousand so that
    /// writes go on meanwhile. The indexer then rebuilds the index from them; versions make
    /// it safe beside live changes. NotFound for an unknown application or chat.
    pub async fn enqueue_reindex(
        &self,
        app: Option<AppToken>,
        chat: Option<ChatNumber>,
    ) -> Result<u64, DomainError> {
        let (app_id, chat) = self
            .read("reindex", move |c| {
                ops::reindex_scope(c, app.as_ref(), chat)
            })
            .await?;
        let mut total = 0;
        let mut after: Option<ops::ReindexPosition> = Some((i64::MIN, i64::MIN, i64::MIN));
        while let Some(position) = after {
            let (count, next) = self
                .write("reindex", move |c| {
                    ops::enqueue_reindex(c, app_id, chat, position, REINDEX_CHUNK)
                })
                .await?;
            total += count;
            after = next;
            self.changes.notify_one();
        }
        Ok(total)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queues lets the readers and the writer finish what is queued and
        // return. The readers hand their connections back and they are closed here, one
        // after the other: closed at once on their own threads, each could see another
        // still open, and then none of them, the last, checkpoints and removes the WAL
        // (`close_waits_for_the_writer_and_releases_the_file` failed 3 times in 30 so).
        self.read_queue.take();
        for reader in self.reader_threads.drain(..) {
            match reader.join() {
                Ok(conn) => drop(conn),
                Err(_) => tracing::error!("a sqlite reader thread panicked"),
            }
        }
        self.queue.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

#[async_trait]
impl RoutingStore for SqliteStore {
    async fn agent_loads(
        &self,
        app: &AppToken,
        agents: &[UserId],
    ) -> Result<Vec<AgentLoad>, DomainError> {
        let (app, agents) = (app.clone(), agents.to_vec());
        self.read("agent_loads", move |c| {
            routing::agent_loads(c, &app, &agents)
        })
        .await
    }

    async fn route_chat(&self, route: &Route) -> Result<Routed, DomainError> {
        let route = route.clone();
        self.write("route_chat", move |c| routing::route_chat(c, &route))
            .await
    }

    async fn waiting_chats(&self, app: &AppToken, limit: u32) -> Result<Vec<Chat>, DomainError> {
        let app = app.clone();
        self.read("waiting_chats", move |c| {
            routing::waiting_chats(c, &app, limit)
        })
        .await
    }
}

#[async_trait]
impl ChatStore for SqliteStore {
    async fn create_application(&self, new: NewApplication) -> Result<Application, DomainError> {
        self.write("create_application", move |c| {
            ops::create_application(c, &new)
        })
        .await
    }

    async fn update_application(
        &self,
        token: &AppToken,
        update: ApplicationUpdate,
    ) -> Result<Application, DomainError> {
        let token = token.clone();
        self.write("update_application", move |c| {
            ops::update_application(c, &token, &update)
        })
        .await
    }

    async fn application(&self, token: &AppToken) -> Result<Option<Application>, DomainError> {
        let token = token.clone();
        self.read("application", move |c| ops::application(c, &token))
            .await
    }

    async fn rotate_application_secret(
        &self,
        token: &AppToken,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Application, DomainError> {
        let token = token.clone();
        self.write("rotate_application_secret", move |c| {
            ops::rotate_application_secret(c, &token, previous_expires_at, now)
        })
        .await
    }

    async fn create_chat(&self, new: NewChat) -> Result<Chat, DomainError> {
        self.write("create_chat", move |c| ops::create_chat(c, &new))
            .await
    }

    async fn update_chat(
        &self,
        scope: &ChatScope,
        update: ChatUpdate,
    ) -> Result<Chat, DomainError> {
        let scope = scope.clone();
        self.write("update_chat", move |c| ops::update_chat(c, &scope, &update))
            .await
    }

    async fn assign_chat(&self, assignment: Assignment) -> Result<Chat, DomainError> {
        self.write("assign_chat", move |c| {
            assignment::assign_chat(c, &assignment)
        })
        .await
    }

    async fn chat(&self, scope: &ChatScope) -> Result<Option<Chat>, DomainError> {
        let scope = scope.clone();
        self.read("chat", move |c| ops::chat(c, &scope)).await
    }

    async fn chats(&self, query: &ChatQuery) -> Result<Vec<Chat>, DomainError> {
        let query = query.clone();
        self.read("chats", move |c| ops::chats(c, &query)).await
    }

    async fn send_message(&self, new: NewMessage) -> Result<Sent, DomainError> {
        let sent = self
            .write("send_message", move |c| ops::send_message(c, &new))
            .await?;
        if sent.created {
            self.changes.notify_one();
        }
        Ok(sent)
    }

    async fn message(
        &self,
        scope: &ChatScope,
        number: MessageNumber,
    ) -> Result<Option<Message>, DomainError> {
        let scope = scope.clone();
        self.read("message", move |c| ops::message(c, &scope, number))
            .await
    }

    async fn messages(
        &self,
        scope: &ChatScope,
        range: &MessageRange,
    ) -> Result<Vec<Message>, DomainError> {
        let (scope, range) = (scope.clone(), range.clone());
        self.read("messages", move |c| ops::messages(c, &scope, &range))
            .await
    }

    async fn edit_message(
        &self,
        change: MessageChange,
        body: MessageBody,
    ) -> Result<Message, DomainError> {
        let edited = self
            .write("edit_message", move |c| {
                ops::edit_message(c, &change, &body)
            })
            .await?;
        self.changes.notify_one();
        Ok(edited)
    }

    async fn delete_message(&self, change: MessageChange) -> Result<Message, DomainError> {
        let deleted = self
            .write("delete_message", move |c| ops::delete_message(c, &change))
            .await?;
        self.changes.notify_one();
        Ok(deleted)
    }

    async fn mark_chat_read(&self, mark: MarkRead) -> Result<ReadReceipt, DomainError> {
        self.write("mark_chat_read", move |c| unread::mark_chat_read(c, &mark))
            .await
    }

    async fn unread_summary(&self, reader: &UserIdentity) -> Result<UnreadSummary, DomainError> {
        let reader = reader.clone();
        self.read("unread_summary", move |c| {
            unread::unread_summary(c, &reader)
        })
        .await
    }

    async fn unread_chats(
        &self,
        reader: &UserIdentity,
        after: Option<ChatNumber>,
        limit: u32,
    ) -> Result<Vec<ChatNumber>, DomainError> {
        let reader = reader.clone();
        self.read("unread_chats", move |c| {
            unread::unread_chats(c, &reader, after, limit)
        })
        .await
    }

    /// One write (one savepoint of a group commit) for the whole page.
    async fn mark_chats_read(
        &self,
        reader: &UserIdentity,
        chats: &[ChatNumber],
    ) -> Result<(), DomainError> {
        let (reader, chats) = (reader.clone(), chats.to_vec());
        self.write("mark_chats_read", move |c| {
            unread::mark_chats_read(c, &reader, &chats)
        })
        .await
    }

    async fn messages_by_number(
        &self,
        scope: &ChatScope,
        numbers: &[MessageNumber],
    ) -> Result<Vec<Message>, DomainError> {
        let (scope, numbers) = (scope.clone(), numbers.to_vec());
        self.read("messages_by_number", move |c| {
            ops::messages_by_number(c, &scope, &numbers)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_that_panics_is_an_error_and_its_reader_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("chat.sqlite3")).unwrap();
        let threads = store.reader_threads.len();
        // More panics than reader threads: a reader that died with its read would leave
        // none for the reads after.
        for _ in 0..threads + 2 {
            let failed = store
                .read("panics", |_| -> StoreResult<()> {
                    panic!("a bug in a read")
                })
                .await;
            assert!(
                matches!(failed, Err(DomainError::Internal { .. })),
                "{failed:?}"
            );
        }
        assert_eq!(store.outbox_len().await.unwrap(), 0);
        assert!(store.reader_threads.iter().all(|t| !t.is_finished()));
    }
}
