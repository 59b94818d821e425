//! The one place where a core [`Error`] becomes a gRPC [`Status`], with the
//! code a client can act on.

use brooklet_core::{Error, StorageErrorKind, error_chain};
use tonic::{Code, Status};

/// The gRPC code for a core error.
fn code(err: &Error) -> Code {
    match err {
        Error::InvalidArgument { .. } | Error::RecordTooLarge { .. } => Code::InvalidArgument,
        Error::TopicNotFound { .. } | Error::GroupNotFound { .. } | Error::UserNotFound { .. } => {
            Code::NotFound
        }
        Error::FailedPrecondition { .. }
        | Error::ProducerRefused { .. }
        | Error::GroupKindConflict { .. }
        | Error::Membership { .. } => Code::FailedPrecondition,
        Error::TopicExists { .. } | Error::UserExists { .. } => Code::AlreadyExists,
        Error::OffsetOutOfRange { .. } => Code::OutOfRange,
        Error::Denied(d) if d.principal.is_none() => Code::Unauthenticated,
        Error::Denied(_) => Code::PermissionDenied,
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

/// NOT_FOUND for an access-control entry that does not exist (the core's
/// `Acls::remove` answers false rather than an error).
pub(crate) fn acl_not_found(acl: &brooklet_core::Acl) -> Status {
    Status::new(Code::NotFound, format!("no such ACL: {acl}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_too_large_is_an_invalid_argument_naming_the_record_and_the_limit() {
        let s = status(Error::RecordTooLarge { field: "records[2]".into(), size: 9, limit: 4 });
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "invalid records[2]: 9 bytes (key + value + headers) exceeds the maximum record size of 4 bytes"
        );
    }
}
