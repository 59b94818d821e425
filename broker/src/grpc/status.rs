//! The one place where a broker [`Error`] becomes a gRPC [`Status`], with the
//! code a client can act on.

use tonic::{Code, Status};

use crate::error::{Error, error_chain};
use crate::storage::StorageError;

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let code = match &err {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::TopicNotFound { .. } | Error::GroupNotFound { .. } => Code::NotFound,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::TopicExists { .. } => Code::AlreadyExists,
            Error::OffsetOutOfRange { .. } => Code::OutOfRange,
            Error::ShuttingDown => Code::Unavailable,
            Error::Storage(StorageError::Corrupt { .. } | StorageError::Metadata { .. }) => Code::DataLoss,
            Error::Storage(StorageError::Sled { .. }) => Code::Unavailable,
        };
        if matches!(err, Error::Storage(_)) {
            tracing::error!(error = %error_chain(&err), "storage error");
        }
        Status::new(code, error_chain(&err))
    }
}
