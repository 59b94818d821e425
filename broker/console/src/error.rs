//! The API's errors: a status and a message naming the field and the
//! limit, answered as `{"error": "..."}`. Core errors become statuses here,
//! in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use brooklet_core::{Denied, Error};

use crate::json::Json;

/// An answer other than success.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    /// 400: `field` is wrong, `reason` says how.
    pub(crate) fn bad(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: format!("invalid {field}: {reason}") }
    }

    /// Any status with a message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::InvalidArgument { .. } | Error::RecordTooLarge { .. } | Error::OffsetOutOfRange { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::TopicNotFound { .. } | Error::GroupNotFound { .. } | Error::UserNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            Error::TopicExists { .. }
            | Error::UserExists { .. }
            | Error::FailedPrecondition { .. }
            | Error::GroupKindConflict { .. }
            | Error::Membership { .. }
            | Error::ProducerRefused { .. } => StatusCode::CONFLICT,
            Error::Denied(_) => StatusCode::FORBIDDEN,
            Error::DiskFull { .. } | Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %brooklet_core::error_chain(&e), "console request failed");
        }
        ApiError { status, message: brooklet_core::error_chain(&e) }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        ApiError { status: StatusCode::FORBIDDEN, message: d.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::api::json_response(self.status, &Json::object([("error", Json::from(self.message))]))
    }
}
