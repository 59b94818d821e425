//! The one place where a core [`Error`] becomes a gRPC [`Status`], with the
//! code a client can act on.

use brooklet_core::{Error, StorageErrorKind, error_chain};
use tonic::{Code, Status};

/// The gRPC code for a core error.
fn code(err: &Error) -> Code {
    match err {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::TopicNotFound { .. } | Error::GroupNotFound { .. } => Code::NotFound,
        Error::FailedPrecondition { .. }
        | Error::ProducerRefused { .. }
        | Error::GroupKindConflict { .. }
        | Error::Membership { .. } => Code::FailedPrecondition,
        Error::TopicExists { .. } => Code::AlreadyExists,
        Error::OffsetOutOfRange { .. } => Code::OutOfRange,
        Error::ShuttingDown => Code::Unavailable,
        Error::DiskFull { .. } => Code::ResourceExhausted,
        Error::Storage(e) => match e.kind() {
            StorageErrorKind::DiskFull => Code::ResourceExhausted,
            StorageErrorKind::Corrupt => Code::DataLoss,
            StorageErrorKind::Io | StorageErrorKind::Engine => Code::Unavailable,
        },
    }
}

/// The status a client gets for `err`; a storage failure is also logged.
pub(crate) fn status(err: Error) -> Status {
    if matches!(err, Error::Storage(_)) {
        tracing::error!(error = %error_chain(&err), "storage error");
    }
    Status::new(code(&err), error_chain(&err))
}
