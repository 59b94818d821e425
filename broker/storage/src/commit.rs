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
//! power loss. So a durable ack needs both. sled also writes a page larger
//! than a quarter of a segment (a leaf holding many large batches, after
//! consolidation) to a file of its own under `blobs/`, which it never syncs:
//! every such file is synced too, with its directory, before the ack.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::StorageError;

/// How many sync requests may wait for the flusher; beyond it, writers wait
/// to enqueue (backpressure instead of growing memory).
const QUEUE: usize = 4096;

type Waiter = oneshot::Sender<Result<(), sled::Error>>;

/// Told about every group-commit flush. Storage reports through this trait,
/// not to a metrics type, so that it stays at the bottom of the dependency
/// order and knows nothing of how (or whether) flushes are measured.
pub trait FlushObserver: Send + Sync + std::fmt::Debug {
    /// One flush made `batches` waiting requests durable (or failed them) in
    /// `took`.
    fn flushed(&self, batches: usize, took: std::time::Duration);
}

/// Makes everything written so far durable: sled flush, `fdatasync` of the
/// database file, and `fdatasync` of every blob file not synced before.
#[derive(Debug)]
pub(super) struct Syncer {
    db: sled::Db,
    log_file: File,
    blobs_dir: PathBuf,
    /// Blob files already synced. A lock because `Storage::sync` (at
    /// shutdown) and the flusher may both sync; both run on blocking threads.
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl Syncer {
    pub(super) fn new(db: sled::Db, log_file: File, blobs_dir: PathBuf) -> Syncer {
        Syncer { db, log_file, blobs_dir, synced_blobs: Mutex::new(HashSet::new()) }
    }

    /// Blocks until everything written before the call is on disk.
    pub(super) fn sync(&self) -> Result<(), sled::Error> {
        self.db.flush()?;
        super::release_deferred();
        self.log_file.sync_data()?;
        self.sync_blobs()?;
        Ok(())
    }

    fn sync_blobs(&self) -> std::io::Result<()> {
        let mut synced = self.synced_blobs.lock();
        let mut present = HashSet::new();
        let mut new = 0;
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                File::open(self.blobs_dir.join(&name))?.sync_data()?;
                new += 1;
            }
            present.insert(name);
        }
        if new > 0 {
            // The new files' directory entries must survive too.
            File::open(&self.blobs_dir)?.sync_all()?;
            tracing::debug!(blobs = new, "synced new blob files");
        }
        // sled deletes blobs it no longer needs; forget those.
        *synced = present;
        Ok(())
    }

    /// Blob files present now that no sync has covered (none, after a sync).
    pub(super) fn unsynced_blobs(&self) -> std::io::Result<usize> {
        let synced = self.synced_blobs.lock();
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut unsynced = 0;
        for entry in entries {
            if !synced.contains(&entry?.file_name()) {
                unsynced += 1;
            }
        }
        Ok(unsynced)
    }
}

/// A handle to the flusher. Cloning shares it; the flusher stops when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::Sender<Waiter>,
}

impl GroupCommit {
    /// Starts the flusher on `tasks`. It holds the database open until the
    /// last handle is dropped.
    pub(super) fn start(
        syncer: Arc<Syncer>,
        max_delay: std::time::Duration,
        observer: Option<Arc<dyn FlushObserver>>,
        tasks: &TaskTracker,
    ) -> GroupCommit {
        let (tx, mut rx) = mpsc::channel::<Waiter>(QUEUE);
        tasks.spawn(async move {
            let mut waiters = Vec::new();
            // Requests the previous sync carried.
            let mut last_group = 0;
            while let Some(first) = rx.recv().await {
                waiters.push(first);
                // Only when the previous sync was shared: a lone writer,
                // waiting for each sync before it writes again, would only
                // be slowed down.
                if !max_delay.is_zero() && last_group > 1 {
                    // Let more writers join this sync, for at most the delay.
                    let deadline = tokio::time::Instant::now() + max_delay;
                    loop {
                        tokio::select! {
                            w = rx.recv() => match w {
                                Some(w) => waiters.push(w),
                                None => break,
                            },
                            () = tokio::time::sleep_until(deadline) => break,
                        }
                    }
                }
                // Everyone who asked while the previous flush ran shares this one.
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let started = Instant::now();
                let syncer = syncer.clone();
                let result = tokio::task::spawn_blocking(move || syncer.sync())
                    .await
                    .unwrap_or_else(|e| Err(sled::Error::ReportableBug(format!("flush task failed: {e}"))));
                let took = started.elapsed();
                last_group = waiters.len();
                if let Some(observer) = &observer {
                    observer.flushed(waiters.len(), took);
                }
                tracing::debug!(
                    batches = waiters.len(),
                    micros = took.as_micros() as u64,
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
        let stopped = || StorageError::engine("sync", "the flusher has stopped");
        self.tx.send(tx).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?.map_err(|e| StorageError::from_sled("sync", e))
    }
}
