//! The client's error type, and the one place where a gRPC `Status` becomes an
//! [`Error`]: its tonic code becomes the client's own [`Code`] here, so no
//! tonic type appears in the public API. Every other module returns these
//! errors and never inspects a status code itself.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

/// What can go wrong talking to a Brooklet broker.
///
/// Each variant is something a caller can act on; the message says what to do.
/// Errors are `Clone` because one failed produce request fails every record
/// of its batches, and each record's future gets its own copy.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topic does not exist (or was deleted).
    #[error("topic {topic:?} does not exist: create it first (Admin::create_topic)")]
    TopicNotFound {
        /// The topic that was named.
        topic: String,
    },

    /// A topic of that name already exists.
    #[error("topic {topic:?} already exists: pick another name or delete the topic first")]
    TopicExists {
        /// The topic that was named.
        topic: String,
    },

    /// The broker (or the client, before sending) rejected an argument: a bad
    /// topic name, partition, config entry, group id or an oversized record.
    /// Retrying the same call will fail the same way.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong, naming the field and the limit.
        message: String,
    },

    /// An offset lies outside a partition's log: above the high watermark, or
    /// (for a commit) beyond what exists.
    #[error("offset out of range: {message}; seek to an offset between the log start and the high watermark")]
    OffsetOutOfRange {
        /// The broker's message, which names the partition's bounds.
        message: String,
    },

    /// The broker could not be reached, or the connection broke, and retries
    /// did not help before the request timeout ran out.
    #[error("broker at {endpoint} unreachable: is `brooklet serve` running there?")]
    Unavailable {
        /// The endpoint the client was built with.
        endpoint: String,
        /// The last transport or `UNAVAILABLE` error seen.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },

    /// The broker did not answer within the request timeout.
    #[error(
        "broker at {endpoint} did not answer {operation} within {timeout:?}: it may be overloaded; \
         raise the request timeout if calls are expected to take longer"
    )]
    Timeout {
        /// The endpoint the client was built with.
        endpoint: String,
        /// The gRPC method, e.g. `Produce`.
        operation: &'static str,
        /// How long the client waited, retries included.
        timeout: Duration,
    },

    /// The endpoint string is not a usable broker address.
    #[error("invalid broker endpoint {endpoint:?}: {reason}; expected an address like http://127.0.0.1:7070")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },

    /// Any other answer from the broker, with its gRPC code.
    ///
    /// ```
    /// use brooklet_client::{Code, Error};
    ///
    /// fn worth_retrying_later(err: &Error) -> bool {
    ///     matches!(err, Error::Broker { code: Code::ResourceExhausted, .. })
    /// }
    /// ```
    #[error("the broker answered {code}: {message}")]
    Broker {
        /// The gRPC status code.
        code: Code,
        /// The broker's message.
        message: String,
    },

    /// The broker refused a call because of the state it is in, not because of
    /// its arguments: a group operation while the group has live members, a
    /// commit from a member that was fenced (its session expired, its epoch
    /// is stale) or that no longer owns the partition. Retrying the same call
    /// fails the same way until that state changes.
    #[error("failed precondition: {message}")]
    FailedPrecondition {
        /// What the broker (or the client) found, and what to do about it.
        message: String,
    },

    /// The consumer group has neither live members nor committed offsets.
    #[error("consumer group {group:?} does not exist: it has no live members and no committed offsets")]
    GroupNotFound {
        /// The group that was named.
        group: String,
    },

    /// A consumer group has no committed offset for a partition it was
    /// assigned, and the consumer was built with
    /// [`AutoOffsetReset::Error`](crate::AutoOffsetReset::Error).
    #[error(
        "group {group:?} has no committed offset for {topic}/{partition} and auto_offset_reset is Error: \
         seek the partition, or reset the group's offsets (Admin::reset_offsets) while it has no members"
    )]
    NoCommittedOffset {
        /// The consumer's group.
        group: String,
        /// The partition's topic.
        topic: String,
        /// The partition.
        partition: u32,
    },

    /// The producer or consumer was closed, or its runtime is shutting down;
    /// build a new one to continue.
    #[error("the client is closed: build a new producer or consumer")]
    Closed,

    /// The circuit breaker of every endpoint is open: the broker could not be
    /// reached several times in a row, so calls fail at once instead of
    /// waiting for their timeout. After a cool-down one call is let through
    /// to try again; see [`Breakers`](crate::Breakers).
    #[error(
        "circuit breaker open for {endpoint}: the broker could not be reached several times in a row, \
         so calls fail at once; one call will be let through to try again in {retry_in:?}"
    )]
    CircuitOpen {
        /// The endpoints, comma-separated.
        endpoint: String,
        /// The time until a call is let through to try again (zero while
        /// one is trying).
        retry_in: Duration,
        /// The last failure to reach the broker.
        #[source]
        source: Option<Arc<dyn StdError + Send + Sync>>,
    },

    /// The endpoint answered HTTP but not gRPC: it is not a Brooklet broker's
    /// gRPC address (perhaps its metrics port).
    #[error(
        "{endpoint} answered HTTP {http_status} without a gRPC status: it does not speak Brooklet's gRPC API; \
         is it the broker's metrics port (--metrics-listen, 7071 by default)? Use its --listen address \
         (7070 by default)"
    )]
    NotBrooklet {
        /// The endpoint that answered.
        endpoint: String,
        /// The HTTP status it answered with, e.g. 404.
        http_status: u16,
    },

    /// The broker's endpoint was reached but TLS failed, or did not match
    /// the endpoint's scheme: its certificate is not trusted, it asks for a
    /// client certificate, it refused the one presented, or it speaks TLS
    /// to an `http://` endpoint (or plaintext to an `https://` one). The
    /// client does not retry it: the next attempt would fail the same way.
    #[error("broker at {endpoint}: {failure}")]
    Tls {
        /// The endpoint that failed.
        endpoint: String,
        /// What went wrong.
        failure: crate::TlsFailure,
        /// The TLS or HTTP/2 error it was told from.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A gRPC status code, as [`Error::Broker`] reports it: the broker's answer
/// when no more specific [`Error`] variant fits.
///
/// These are the standard gRPC codes other than `OK`. Some rarely reach
/// [`Error::Broker`] because they have a variant of their own where the call
/// makes their meaning clear: `NOT_FOUND` for one named topic or group is
/// [`Error::TopicNotFound`] or [`Error::GroupNotFound`], `INVALID_ARGUMENT` is
/// [`Error::InvalidArgument`], `DEADLINE_EXCEEDED` is [`Error::Timeout`],
/// `UNAVAILABLE` is [`Error::Unavailable`]. Displayed as the code's gRPC name,
/// e.g. `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// `CANCELLED`: the call was cancelled, usually by the caller.
    Cancelled,
    /// `UNKNOWN`: an error the broker did not classify.
    Unknown,
    /// `INVALID_ARGUMENT`: the request was malformed, whatever the broker's
    /// state.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED`: the deadline passed before the call completed.
    DeadlineExceeded,
    /// `NOT_FOUND`: something the call named does not exist.
    NotFound,
    /// `ALREADY_EXISTS`: something the call would create already exists.
    AlreadyExists,
    /// `PERMISSION_DENIED`: the caller may not do this.
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED`: the broker is overloaded (too many requests on
    /// the connection, a full disk) or a message exceeds a size limit; the
    /// message says which.
    ResourceExhausted,
    /// `FAILED_PRECONDITION`: the broker's state does not allow the call.
    FailedPrecondition,
    /// `ABORTED`: the call was aborted, e.g. by a concurrent change.
    Aborted,
    /// `OUT_OF_RANGE`: an offset or size outside what is valid.
    OutOfRange,
    /// `UNIMPLEMENTED`: the broker does not know the call; it may be older
    /// than the client.
    Unimplemented,
    /// `INTERNAL`: the broker failed, or its answer broke the protocol.
    Internal,
    /// `UNAVAILABLE`: the broker cannot serve the call right now.
    Unavailable,
    /// `DATA_LOSS`: data was lost or corrupted.
    DataLoss,
    /// `UNAUTHENTICATED`: the call lacks valid credentials.
    Unauthenticated,
}

impl Code {
    /// The code's gRPC name, e.g. `NOT_FOUND`: what [`Display`](fmt::Display)
    /// writes.
    pub fn name(self) -> &'static str {
        match self {
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The client's code for a tonic code. `OK` never comes with a failed
    /// call; should a broker send it, it is [`Code::Unknown`].
    fn from_tonic(code: tonic::Code) -> Code {
        match code {
            tonic::Code::Ok | tonic::Code::Unknown => Code::Unknown,
            tonic::Code::Cancelled => Code::Cancelled,
            tonic::Code::InvalidArgument => Code::InvalidArgument,
            tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::AlreadyExists => Code::AlreadyExists,
            tonic::Code::PermissionDenied => Code::PermissionDenied,
            tonic::Code::ResourceExhausted => Code::ResourceExhausted,
            tonic::Code::FailedPrecondition => Code::FailedPrecondition,
            tonic::Code::Aborted => Code::Aborted,
            tonic::Code::OutOfRange => Code::OutOfRange,
            tonic::Code::Unimplemented => Code::Unimplemented,
            tonic::Code::Internal => Code::Internal,
            tonic::Code::Unavailable => Code::Unavailable,
            tonic::Code::DataLoss => Code::DataLoss,
            tonic::Code::Unauthenticated => Code::Unauthenticated,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The broker RPCs, named in errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    CreateTopic,
    DeleteTopic,
    ListTopics,
    DescribeTopic,
    Produce,
    Fetch,
    CommitOffsets,
    FetchOffsets,
    ListOffsets,
    Heartbeat,
    ListGroups,
    DescribeGroup,
    DeleteGroup,
    ResetOffsets,
    InitProducerId,
    AlterTopicConfig,
    Status,
    CreateUser,
    DeleteUser,
    ListUsers,
    SetUserPassword,
    CreateAcl,
    DeleteAcl,
    ListAcls,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::CreateTopic => "CreateTopic",
            Op::DeleteTopic => "DeleteTopic",
            Op::ListTopics => "ListTopics",
            Op::DescribeTopic => "DescribeTopic",
            Op::Produce => "Produce",
            Op::Fetch => "Fetch",
            Op::CommitOffsets => "CommitOffsets",
            Op::FetchOffsets => "FetchOffsets",
            Op::ListOffsets => "ListOffsets",
            Op::Heartbeat => "Heartbeat",
            Op::ListGroups => "ListGroups",
            Op::DescribeGroup => "DescribeGroup",
            Op::DeleteGroup => "DeleteGroup",
            Op::ResetOffsets => "ResetOffsets",
            Op::InitProducerId => "InitProducerId",
            Op::AlterTopicConfig => "AlterTopicConfig",
            Op::Status => "Status",
            Op::CreateUser => "CreateUser",
            Op::DeleteUser => "DeleteUser",
            Op::ListUsers => "ListUsers",
            Op::SetUserPassword => "SetUserPassword",
            Op::CreateAcl => "CreateAcl",
            Op::DeleteAcl => "DeleteAcl",
            Op::ListAcls => "ListAcls",
        }
    }
}

/// What the client knew about a call when it failed: enough to turn a bare
/// status code into an error that names the topic or endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallContext<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) op: Op,
    /// The one topic the call concerns, if there is exactly one. A commit that
    /// spans topics has none, so its NOT_FOUND stays a [`Error::Broker`].
    pub(crate) topic: Option<&'a str>,
    /// The group a call about one group names, when its NOT_FOUND can only
    /// mean the group (DescribeGroup, DeleteGroup). Takes precedence over
    /// `topic`.
    pub(crate) group: Option<&'a str>,
    pub(crate) timeout: Duration,
}

/// Whether `status` reports a failure to reach the broker rather than an
/// answer from it. Statuses the client builds from transport errors carry
/// a source; statuses decoded from a broker's answer never do.
pub(crate) fn is_connection_failure(status: &Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Internal => status.source().is_some(),
        _ => false,
    }
}

impl Error {
    /// Maps a failed call's status to the error a caller can act on.
    pub(crate) fn from_status(status: Status, call: &CallContext<'_>) -> Error {
        if is_connection_failure(&status) {
            return Error::Unavailable { endpoint: call.endpoint.to_owned(), source: Arc::new(status) };
        }
        let message = status.message().to_owned();
        if let (tonic::Code::NotFound, Some(group)) = (status.code(), call.group) {
            return Error::GroupNotFound { group: group.to_owned() };
        }
        match (status.code(), call.topic) {
            (tonic::Code::NotFound, Some(topic)) => Error::TopicNotFound { topic: topic.to_owned() },
            (tonic::Code::AlreadyExists, Some(topic)) if call.op == Op::CreateTopic => {
                Error::TopicExists { topic: topic.to_owned() }
            }
            (tonic::Code::InvalidArgument, _) => Error::InvalidArgument { message },
            // Only reads and commits carry offsets; elsewhere OUT_OF_RANGE is
            // tonic's message-size limit and must not pass for an offset error.
            (tonic::Code::OutOfRange, _)
                if matches!(call.op, Op::Fetch | Op::CommitOffsets | Op::ResetOffsets) =>
            {
                Error::OffsetOutOfRange { message }
            }
            (tonic::Code::FailedPrecondition, _) => Error::FailedPrecondition { message },
            (tonic::Code::DeadlineExceeded, _) => Error::Timeout {
                endpoint: call.endpoint.to_owned(),
                operation: call.op.name(),
                timeout: call.timeout,
            },
            (code, _) => Error::Broker { code: Code::from_tonic(code), message },
        }
    }

    /// An answer that breaks the protocol's promises (a missing field, an
    /// acknowledgement that does not match the request).
    pub(crate) fn protocol(op: Op, what: impl std::fmt::Display) -> Error {
        Error::Broker { code: Code::Internal, message: format!("malformed {} answer: {what}", op.name()) }
    }

    /// Whether the failure may be caused by stale partition metadata, so the
    /// producer should describe the topic again before its next send.
    pub(crate) fn invalidates_metadata(&self) -> bool {
        matches!(self, Error::TopicNotFound { .. } | Error::InvalidArgument { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: Op, topic: Option<&'static str>) -> CallContext<'static> {
        CallContext {
            endpoint: "http://127.0.0.1:7070",
            op,
            topic,
            group: None,
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn failed_precondition_keeps_the_broker_message() {
        let err = Error::from_status(
            Status::failed_precondition("member `m` is not in group `g`: rejoin"),
            &call(Op::CommitOffsets, Some("t")),
        );
        assert!(
            matches!(&err, Error::FailedPrecondition { message } if message.contains("rejoin")),
            "{err:?}"
        );
    }

    #[test]
    fn not_found_on_a_group_call_names_the_group() {
        let context = CallContext { group: Some("billing"), ..call(Op::DescribeGroup, None) };
        let err = Error::from_status(Status::not_found("group"), &context);
        assert!(matches!(&err, Error::GroupNotFound { group } if group == "billing"), "{err:?}");
        // A reset names a topic, and its NOT_FOUND is the topic's.
        let err = Error::from_status(Status::not_found("topic"), &call(Op::ResetOffsets, Some("t")));
        assert!(matches!(&err, Error::TopicNotFound { topic } if topic == "t"), "{err:?}");
    }

    #[test]
    fn not_found_names_the_topic() {
        let err = Error::from_status(Status::not_found("no such topic"), &call(Op::Produce, Some("orders")));
        assert!(matches!(&err, Error::TopicNotFound { topic } if topic == "orders"), "{err:?}");
    }

    #[test]
    fn not_found_without_a_single_topic_stays_a_broker_error() {
        let err = Error::from_status(Status::not_found("topic x"), &call(Op::CommitOffsets, None));
        assert!(matches!(err, Error::Broker { code: Code::NotFound, .. }), "{err:?}");
    }

    #[test]
    fn already_exists_is_topic_exists() {
        let err = Error::from_status(Status::already_exists("taken"), &call(Op::CreateTopic, Some("t")));
        assert!(matches!(&err, Error::TopicExists { topic } if topic == "t"), "{err:?}");
    }

    #[test]
    fn invalid_argument_keeps_the_broker_message() {
        let err = Error::from_status(
            Status::invalid_argument("partitions: 5000 exceeds the maximum 1024"),
            &call(Op::CreateTopic, Some("t")),
        );
        assert!(matches!(&err, Error::InvalidArgument { message } if message.contains("1024")), "{err:?}");
    }

    #[test]
    fn out_of_range_is_an_offset_error_only_for_offset_calls() {
        let status = || Status::out_of_range("offset 99 outside [0, 10]");
        let fetch = Error::from_status(status(), &call(Op::Fetch, Some("t")));
        assert!(matches!(fetch, Error::OffsetOutOfRange { .. }), "{fetch:?}");
        let produce = Error::from_status(status(), &call(Op::Produce, Some("t")));
        assert!(matches!(produce, Error::Broker { code: Code::OutOfRange, .. }), "{produce:?}");
    }

    #[test]
    fn unavailable_names_the_endpoint_and_keeps_the_source() {
        let err = Error::from_status(Status::unavailable("tcp connect error"), &call(Op::ListTopics, None));
        let Error::Unavailable { endpoint, source } = &err else {
            panic!("expected Unavailable, got {err:?}");
        };
        assert_eq!(endpoint, "http://127.0.0.1:7070");
        assert!(source.to_string().contains("tcp connect error"));
        assert!(err.to_string().contains("brooklet serve"));
        assert!(StdError::source(&err).is_some());
    }

    #[test]
    fn a_transport_failure_is_unavailable_but_a_broker_internal_error_is_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let transport = Status::from_error(Box::new(io));
        assert_eq!(transport.code(), tonic::Code::Unknown);
        assert!(is_connection_failure(&transport));
        let from_broker = Status::internal("storage failed");
        assert!(!is_connection_failure(&from_broker));
        let err = Error::from_status(from_broker, &call(Op::Fetch, Some("t")));
        assert!(matches!(err, Error::Broker { code: Code::Internal, .. }), "{err:?}");
    }

    #[test]
    fn every_tonic_error_code_has_a_client_code_of_the_same_name() {
        for value in 1..=16 {
            let tonic = tonic::Code::from_i32(value);
            let code = Code::from_tonic(tonic);
            assert_eq!(format!("{code:?}"), format!("{tonic:?}"));
            let upper_camel: String =
                code.name().split('_').map(|w| w[..1].to_owned() + &w[1..].to_lowercase()).collect();
            assert_eq!(upper_camel, format!("{tonic:?}"));
        }
        assert_eq!(Code::from_tonic(tonic::Code::Unknown), Code::Unknown);
        assert_eq!(Code::from_tonic(tonic::Code::Ok), Code::Unknown);
    }

    #[test]
    fn a_broker_error_displays_the_grpc_name_of_its_code() {
        let err = Error::from_status(
            Status::resource_exhausted("too many requests"),
            &call(Op::Produce, Some("t")),
        );
        assert!(matches!(err, Error::Broker { code: Code::ResourceExhausted, .. }), "{err:?}");
        assert_eq!(err.to_string(), "the broker answered RESOURCE_EXHAUSTED: too many requests");
    }

    #[test]
    fn deadline_exceeded_is_a_timeout() {
        let err = Error::from_status(Status::deadline_exceeded("late"), &call(Op::Fetch, Some("t")));
        assert!(
            matches!(err, Error::Timeout { operation: "Fetch", timeout, .. } if timeout == Duration::from_secs(30)),
            "{err:?}"
        );
    }
}
