//! Group commit: durable acknowledgements share flushes.
//!
//! A writer appends its batch, then asks for a sync and waits. One flusher
//! task takes every request waiting since its last flush, makes them durable
//! with one sled flush followed by `fdatasync` of the database file, and
//! completes them all. Under concurrency, many batches ride on each flush.
//!
//! sled's own `flush()` writes its buffers and calls `sync_file_range`, which
//! flushes neither the disk's write cache nor the file's metadata; only
//! `fdatasync` (or sled's background `sync_all`) makes the write survive a
//! power loss. So a durable ack needs both.

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::StorageError;

/// How many sync requests may wait for the flusher; beyond it, writers wait
/// to enqueue (backpressure instead of growing memory).
const QUEUE: usize = 4096;

type Waiter = oneshot::Sender<Result<(), sled::Error>>;

/// A handle to the flusher. Cloning shares it; the flusher stops when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::Sender<Waiter>,
}

impl GroupCommit {
    /// Starts the flusher for `db`, whose log file is `file`, on `tasks`. The
    /// flusher holds the database open until the last handle is dropped.
    pub(super) fn start(db: sled::Db, file: Arc<File>, tasks: &TaskTracker) -> GroupCommit {
        let (tx, mut rx) = mpsc::channel::<Waiter>(QUEUE);
        tasks.spawn(async move {
            let mut waiters = Vec::new();
            while let Some(first) = rx.recv().await {
                waiters.push(first);
                // Everyone who asked while the previous flush ran shares this one.
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let started = Instant::now();
                let (db, file) = (db.clone(), file.clone());
                let result = tokio::task::spawn_blocking(move || {
                    db.flush()?;
                    file.sync_data().map_err(sled::Error::Io)
                })
                .await
                .unwrap_or_else(|e| Err(sled::Error::ReportableBug(format!("flush task failed: {e}"))));
                tracing::debug!(
                    batches = waiters.len(),
                    micros = started.elapsed().as_micros() as u64,
                    ok = result.is_ok(),
                    "group commit"
                );
                for w in waiters.drain(..) {
                    // A writer that stopped waiting (its request was
                    // cancelled) has nobody to tell.
                    let _ = w.send(result.clone());
                }
            }
        });
        GroupCommit { tx }
    }

    /// Waits until everything written before this call is on disk.
    pub async fn sync(&self) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StorageError::Sled {
            op: "sync",
            source: sled::Error::Unsupported("the flusher has stopped".into()),
        };
        self.tx.send(tx).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?.map_err(|source| StorageError::Sled { op: "sync", source })
    }
}
