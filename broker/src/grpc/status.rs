//! The one place where a broker [`Error`] becomes a gRPC [`Status`], with the
//! code a client can act on.

use tonic::{Code, Status};

use crate::error::{Error, error_chain};
use crate::storage::StorageError;

/// ENOSPC or EDQUOT: out of space or quota.
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let code = match &err {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::TopicNotFound { .. } | Error::GroupNotFound { .. } => Code::NotFound,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::TopicExists { .. } => Code::AlreadyExists,
            Error::OffsetOutOfRange { .. } => Code::OutOfRange,
            Error::ShuttingDown => Code::Unavailable,
            Error::DiskFull { .. } => Code::ResourceExhausted,
            Error::Storage(StorageError::Sled { source: sled::Error::Io(e), .. }) if is_disk_full(e) => {
                Code::ResourceExhausted
            }
            Error::Storage(StorageError::Corrupt { .. } | StorageError::Metadata { .. }) => Code::DataLoss,
            Error::Storage(StorageError::Sled { .. }) => Code::Unavailable,
        };
        if matches!(err, Error::Storage(_)) {
            tracing::error!(error = %error_chain(&err), "storage error");
        }
        Status::new(code, error_chain(&err))
    }
}
