//! The single writer: one thread owns the write connection and commits in groups.
//!
//! It blocks for one command, drains whatever else is queued (up to [`MAX_BATCH`]), runs
//! them all in one `BEGIN IMMEDIATE` transaction, each inside its own savepoint so that a
//! failing command is rolled back alone, commits, and only then replies. One fsync
//! (`synchronous=FULL`) thus acknowledges a whole batch, and an `Ok` is never sent for a
//! write that is not on disk.

use std::sync::{Arc, Mutex, PoisonError};

use chat_domain::DomainError;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{BatchFailed, Result, StoreError};

/// Commands per transaction at most.
pub(crate) const MAX_BATCH: usize = 512;
/// Commands waiting for the writer at most; senders wait beyond that (back pressure).
pub(crate) const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// One write, type-erased for the queue.
pub(crate) trait Command: Send {
    /// Runs inside the open transaction; `false` when the command failed (its savepoint is
    /// then rolled back).
    fn execute(&mut self, conn: &Connection) -> bool;
    /// Replies: the command's own outcome if the batch committed, Internal otherwise.
    fn finish(self: Box<Self>, batch: Result<(), &BatchFailed>);
}

pub(crate) type Job = Box<dyn Command>;

pub(crate) struct Op<T, F> {
    operation: &'static str,
    work: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T, DomainError>>,
}

impl<T, F> Op<T, F> {
    pub(crate) fn new(
        operation: &'static str,
        work: F,
        reply: oneshot::Sender<Result<T, DomainError>>,
    ) -> Self {
        Op {
            operation,
            work: Some(work),
            outcome: None,
            reply,
        }
    }
}

impl<T, F> Command for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn execute(&mut self, conn: &Connection) -> bool {
        let outcome = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::WriterGone),
        };
        let ok = outcome.is_ok();
        if let Err(e) = &outcome
            && !matches!(e, StoreError::Domain(_))
        {
            tracing::warn!(operation = self.operation, error = %e, "write command failed");
        }
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, batch: Result<(), &BatchFailed>) {
        let this = *self;
        let reply = match batch {
            Ok(()) => this.outcome.unwrap_or(Err(StoreError::WriterGone)),
            Err(failed) => Err(StoreError::Batch(failed.clone())),
        };
        // The caller may have gone away (request cancelled); the write stands regardless.
        let _ = this
            .reply
            .send(reply.map_err(|e| e.into_domain(this.operation)));
    }
}

/// The write connection: owned by the writer (file), or shared with the readers behind a
/// mutex (in memory, where one connection is the only way to share one database
/// correctly).
pub(crate) enum WriteConn {
    Owned(Connection),
    Shared(Arc<Mutex<Connection>>),
}

impl WriteConn {
    fn with<R>(&mut self, f: impl FnOnce(&Connection) -> R) -> R {
        match self {
            WriteConn::Owned(conn) => f(conn),
            WriteConn::Shared(conn) => f(&conn.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }
}

pub(crate) fn spawn(
    conn: WriteConn,
    rx: mpsc::Receiver<Job>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("chat-sqlite-writer".into())
        .spawn(move || run(conn, rx))
}

/// Until every sender is gone: take a batch, run it, reply.
fn run(mut conn: WriteConn, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        conn.with(|c| process(c, &mut batch));
    }
    tracing::debug!("writer stopped: the store was dropped");
}

/// Runs one batch in one transaction, then replies to each command (emptying `batch`).
fn process(conn: &Connection, batch: &mut Vec<Job>) {
    let outcome = run_batch(conn, batch);
    match &outcome {
        Ok(()) => tracing::trace!(commands = batch.len(), "committed a batch"),
        Err(e) => tracing::error!(commands = batch.len(), error = %e, "write batch failed"),
    }
    for job in batch.drain(..) {
        job.finish(outcome.as_ref().map(|_| ()));
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_batch(conn: &Connection, jobs: &mut [Job]) -> Result<(), BatchFailed> {
    if !conn.is_autocommit() {
        // A failed rollback left a transaction open: start from a clean state.
        conn.execute_batch("ROLLBACK")
            .map_err(|e| BatchFailed::new("rollback of a stale transaction", e))?;
    }
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| BatchFailed::new("begin", e))?;
    let result = run_in_transaction(conn, jobs);
    if result.is_err()
        && !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "rollback of a failed batch failed");
    }
    result
}

fn run_in_transaction(conn: &Connection, jobs: &mut [Job]) -> Result<(), BatchFailed> {
    for job in jobs.iter_mut() {
        exec(conn, "SAVEPOINT command").map_err(|e| BatchFailed::new("savepoint", e))?;
        let ok = job.execute(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk full ...): the
            // commands before this one are lost too.
            return Err(BatchFailed::new(
                "command",
                "sqlite rolled back the transaction after an error",
            ));
        }
        let end = if ok {
            exec(conn, "RELEASE command")
        } else {
            exec(conn, "ROLLBACK TO command").and_then(|()| exec(conn, "RELEASE command"))
        };
        end.map_err(|e| BatchFailed::new("savepoint release", e))?;
    }
    exec(conn, "COMMIT").map_err(|e| BatchFailed::new("commit", e))
}

#[cfg(test)]
mod tests {
    use chat_domain::ErrorCode;

    use super::*;

    type Reply = oneshot::Receiver<Result<i64, DomainError>>;

    fn job(work: impl FnOnce(&Connection) -> Result<i64> + Send + 'static) -> (Job, Reply) {
        let (tx, rx) = oneshot::channel();
        (Box::new(Op::new("test", work, tx)), rx)
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> Result<i64> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
            Ok(x)
        }
    }

    fn connection() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (x INTEGER PRIMARY KEY,
                 p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        conn
    }

    fn stored(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn run(conn: &Connection, jobs: Vec<(Job, Reply)>) -> Vec<Result<i64, DomainError>> {
        let (mut batch, replies): (Vec<Job>, Vec<Reply>) = jobs.into_iter().unzip();
        process(conn, &mut batch);
        assert!(batch.is_empty());
        assert!(conn.is_autocommit(), "no transaction is left open");
        replies
            .into_iter()
            .map(|mut r| r.try_recv().expect("every command got a reply"))
            .collect()
    }

    #[test]
    fn a_failing_command_is_rolled_back_alone() {
        let conn = connection();
        let replies = run(
            &conn,
            vec![
                job(insert(1)),
                job(|c| {
                    insert(2)(c)?;
                    Err(DomainError::NotFound("nope".into()).into())
                }),
                // A constraint error of SQLite itself is rolled back alone too.
                job(insert(1)),
                job(insert(3)),
            ],
        );
        assert_eq!(replies[0].as_ref().unwrap(), &1);
        assert_eq!(replies[1].as_ref().unwrap_err().code(), ErrorCode::NotFound);
        assert_eq!(replies[2].as_ref().unwrap_err().code(), ErrorCode::Internal);
        assert_eq!(replies[3].as_ref().unwrap(), &3);
        assert_eq!(stored(&conn), vec![1, 3]);
    }

    #[test]
    fn a_failed_commit_fails_every_command_and_keeps_nothing() {
        let conn = connection();
        // The deferred foreign key is checked at COMMIT only: the command succeeds, the
        // commit fails.
        let dangling = |c: &Connection| -> Result<i64> {
            c.execute("INSERT INTO t (x, p) VALUES (2, 99)", [])?;
            Ok(2)
        };
        let replies = run(&conn, vec![job(insert(1)), job(dangling)]);
        for reply in &replies {
            let error = reply.as_ref().unwrap_err();
            assert_eq!(error.code(), ErrorCode::Internal, "{error:?}");
        }
        assert!(stored(&conn).is_empty());

        // The writer goes on with the next batch.
        let replies = run(&conn, vec![job(insert(5))]);
        assert_eq!(replies[0].as_ref().unwrap(), &5);
        assert_eq!(stored(&conn), vec![5]);
    }

    #[test]
    fn a_transaction_lost_mid_batch_fails_every_command() {
        let conn = connection();
        let rollback = |c: &Connection| -> Result<i64> {
            c.execute_batch("ROLLBACK")?;
            Ok(0)
        };
        let replies = run(&conn, vec![job(insert(1)), job(rollback), job(insert(3))]);
        for reply in &replies {
            assert_eq!(reply.as_ref().unwrap_err().code(), ErrorCode::Internal);
        }
        assert!(stored(&conn).is_empty());
        let replies = run(&conn, vec![job(insert(4))]);
        assert_eq!(replies[0].as_ref().unwrap(), &4);
    }
}
