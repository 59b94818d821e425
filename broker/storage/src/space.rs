//! Space that deletes freed inside the database file: an estimate of what
//! sled will reuse before it grows the file, so that the free-space reserve
//! can count it besides the file system's free space.
//!
//! What sled 0.34 does with freed space (`pagecache/segment.rs`): its file
//! is a log of 8 MiB segments. Removing keys or dropping a tree marks the
//! pages that held them replaced; a segment whose live bytes fall to half or
//! less is drained (its remaining pages rewritten elsewhere) and put on a
//! free list once the segment written when it was freed has been filled and
//! flushed. A new segment comes off the free list before the file is
//! extended. The file shrinks only when its last segments are free, which is
//! rare (the segment being written is usually the last), so deleting data
//! gives the file system nothing back; sled writes into the freed segments
//! instead. Values over a quarter of a segment live in blob files, removed
//! (space given back) once nothing refers to them.
//!
//! The credit is raised by the stored bytes of deleted batches, and lowered
//! by the stored bytes of every batch written and by every rise of the file
//! system's free space (space sled gave back by shrinking its file or
//! removing a blob is no longer in the file; a rise for any other reason
//! only makes the credit lower than it could be). File growth does not
//! lower it: right after a delete sled extends the file for a while before
//! the freed segments come off its free list. It is kept across restarts:
//! saved when raised and at a clean shutdown (after a crash it misses the
//! batches written since it was last saved).
//!
//! Measured on a 160 MiB tmpfs, filled (1 KiB and 128 KiB records, 1 MiB
//! writes, each synced) until 64 MiB were left: sled's file was about
//! 100 MB for 40-50 MB of batches. After the topic was deleted, the file
//! stayed 100 MB; new batches first grew it by 0-17 MB, then went into the
//! freed space: 38-58 MB of them before it grew further, against a credit
//! of 40-50 MB. With 256 KiB records (blob files) it grew by 21 MB while the
//! first 15 MB were written. So the credit is close, but it can be wrong in
//! both directions, and the reserve must not rest on it alone: the core
//! counts it for at most half of the reserve.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::StorageError;
use crate::error::sled_err;

/// The key of the saved credit in its tree: the credit, then the free space
/// it was last compared with (`u64::MAX`: none), both big-endian.
const KEY: &[u8] = b"reusable";

/// Bytes freed inside the database file, see the module docs.
#[derive(Debug)]
pub(crate) struct Reusable {
    credit: AtomicU64,
    /// The file system's free space when last looked at. The lock also
    /// orders the saves, so the last one saved is the newest.
    last_free: Mutex<Option<u64>>,
    tree: sled::Tree,
}

impl Reusable {
    /// Loads the saved credit from `tree` (none: 0).
    pub(crate) fn open(tree: sled::Tree) -> Result<Reusable, StorageError> {
        let saved = tree.get(KEY).map_err(sled_err("read reusable space"))?;
        let word = |bytes: &[u8]| bytes.try_into().ok().map(u64::from_be_bytes);
        let (credit, last_free) = match saved.as_deref().filter(|v| v.len() == 16) {
            Some(v) => (word(&v[..8]).unwrap_or(0), word(&v[8..]).filter(|&free| free != u64::MAX)),
            None => (0, None),
        };
        Ok(Reusable { credit: AtomicU64::new(credit), last_free: Mutex::new(last_free), tree })
    }

    /// Deleted batches of `bytes` stored bytes: raises the credit and saves it.
    pub(crate) fn freed(&self, bytes: u64) -> Result<(), StorageError> {
        if bytes == 0 {
            return Ok(());
        }
        let last_free = self.last_free.lock();
        self.credit.fetch_add(bytes, Ordering::AcqRel);
        self.save_locked(*last_free)
    }

    /// Batches of `bytes` stored bytes are being written: lowers the credit.
    pub(crate) fn spend(&self, bytes: u64) {
        let _ =
            self.credit.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_sub(bytes)));
    }

    /// The credit, after lowering it by any rise of the file system's free
    /// space since the last look (`free` is the free space now).
    pub(crate) fn observe(&self, free: u64) -> u64 {
        let mut last_free = self.last_free.lock();
        if let Some(rise) = last_free.and_then(|last| free.checked_sub(last)) {
            self.spend(rise);
        }
        *last_free = Some(free);
        self.credit.load(Ordering::Acquire)
    }

    /// Saves the credit (at shutdown: it may have been lowered since).
    pub(crate) fn save(&self) -> Result<(), StorageError> {
        let last_free = self.last_free.lock();
        self.save_locked(*last_free)
    }

    fn save_locked(&self, last_free: Option<u64>) -> Result<(), StorageError> {
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&self.credit.load(Ordering::Acquire).to_be_bytes());
        value[8..].copy_from_slice(&last_free.unwrap_or(u64::MAX).to_be_bytes());
        self.tree.insert(KEY, &value).map(drop).map_err(sled_err("save reusable space"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(db: &sled::Db) -> sled::Tree {
        db.open_tree("space").unwrap()
    }

    /// The database at `path`, without sled's background flusher: its
    /// thread holds the database (and its file lock) for a moment after the
    /// last handle is dropped, so an immediate reopen could find it locked.
    fn open(path: &std::path::Path) -> sled::Db {
        sled::Config::new().path(path).flush_every_ms(None).open().unwrap()
    }

    /// Deletes raise the credit; writes, and space coming back to the file
    /// system, lower it; the file system's free space falling does not; it
    /// never goes below zero; and it survives a reopen, rises since the last
    /// look included.
    #[test]
    fn the_credit_follows_deletes_writes_and_returned_space() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path());
            let r = Reusable::open(tree(&db)).unwrap();
            assert_eq!(r.observe(1000), 0, "nothing deleted yet");
            r.freed(500).unwrap();
            assert_eq!(r.observe(1000), 500);
            r.spend(100);
            assert_eq!(r.observe(1000), 400, "written batches use it");
            assert_eq!(r.observe(900), 400, "the file growing leaves it");
            assert_eq!(r.observe(950), 350, "space given back to the file system is no longer in the file");
            r.spend(1000);
            assert_eq!(r.observe(950), 0, "never below zero");
            r.freed(300).unwrap();
            r.spend(50);
            r.save().unwrap();
            db.flush().unwrap();
        }
        let db = open(dir.path());
        let r = Reusable::open(tree(&db)).unwrap();
        assert_eq!(r.observe(1000), 200, "kept across a restart, less the 50 free space rose meanwhile");
    }
}
