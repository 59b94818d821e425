//! Storage errors, by kind. No engine type appears in them: callers decide
//! what to do from [`StorageError::kind`], and log the chain.

use crate::batch::BatchError;

/// What kind of failure a [`StorageError`] is, for callers that map it to
/// their own errors (a gRPC status, a Kafka error code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The file system is out of space or quota.
    DiskFull,
    /// Stored data is damaged or does not decode.
    Corrupt,
    /// Any other I/O failure.
    Io,
    /// The storage engine failed for a reason of its own, or has stopped.
    Engine,
}

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("storage {op} failed")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database is locked by another process: another broker runs on
    /// the same data directory.
    #[error("another broker is using the data directory {} (its database is locked)", dir.display())]
    Locked {
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// The storage engine failed (a reported bug, an unsupported operation,
    /// damage it found itself, or the flusher has stopped).
    #[error("storage {op} failed: {reason}")]
    Engine {
        /// What was being done.
        op: &'static str,
        /// The engine's words.
        reason: String,
        /// The engine reported damage to its own files.
        corrupt: bool,
    },
    /// A stored batch is damaged.
    #[error("stored batch {topic}/{partition}@{base_offset} is damaged")]
    Corrupt {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// The batch key's base offset.
        base_offset: u64,
        /// What is wrong.
        #[source]
        source: BatchError,
    },
    /// Stored metadata does not decode.
    #[error("stored {what} does not decode")]
    Metadata {
        /// Which metadata.
        what: &'static str,
        /// The decode error.
        #[source]
        source: prost::DecodeError,
    },
}

impl StorageError {
    /// The kind of failure.
    pub fn kind(&self) -> StorageErrorKind {
        match self {
            StorageError::Io { source, .. } if is_disk_full(source) => StorageErrorKind::DiskFull,
            StorageError::Io { .. } | StorageError::Locked { .. } => StorageErrorKind::Io,
            StorageError::Engine { corrupt: true, .. }
            | StorageError::Corrupt { .. }
            | StorageError::Metadata { .. } => StorageErrorKind::Corrupt,
            StorageError::Engine { .. } => StorageErrorKind::Engine,
        }
    }

    pub(crate) fn io(op: &'static str, source: std::io::Error) -> StorageError {
        StorageError::Io { op, source }
    }

    pub(crate) fn engine(op: &'static str, reason: impl Into<String>) -> StorageError {
        StorageError::Engine { op, reason: reason.into(), corrupt: false }
    }

    pub(crate) fn from_sled(op: &'static str, err: sled::Error) -> StorageError {
        match err {
            sled::Error::Io(source) => StorageError::Io { op, source },
            sled::Error::Corruption { at, .. } => StorageError::Engine {
                op,
                reason: format!("the database is damaged at {at:?}"),
                corrupt: true,
            },
            other => StorageError::engine(op, other.to_string()),
        }
    }
}

/// ENOSPC or EDQUOT: out of space or quota.
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Maps a sled error to a [`StorageError`] saying what was being done.
pub(crate) fn sled_err(op: &'static str) -> impl FnOnce(sled::Error) -> StorageError {
    move |err| StorageError::from_sled(op, err)
}

/// An error and its sources, joined with ": ", for logs and messages.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
