//! The one place where a broker [`Error`] becomes a gRPC [`Status`], with the
//! code a client can act on.

use tonic::{Code, Status};

use crate::error::Error;
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

/// The error and its sources, joined with ": ".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
