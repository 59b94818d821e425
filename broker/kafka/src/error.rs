//! The one place where a core [`Error`] becomes a Kafka error code.

use brooklet_core::{
    Denied, Error, MembershipRefusal, ProducerRefusal, ResourceType, StorageErrorKind, error_chain,
};
use kafka_protocol::ResponseError;

/// The Kafka error for a core error; a storage failure is also logged.
pub(crate) fn kafka_error(err: &Error) -> ResponseError {
    match err {
        Error::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        Error::InvalidArgument { field, .. } => {
            if field.ends_with("partition") || field.starts_with("partitions") {
                ResponseError::UnknownTopicOrPartition
            } else if field == "group" {
                ResponseError::InvalidGroupId
            } else if field.starts_with("offsets[") && field.ends_with("metadata") {
                ResponseError::OffsetMetadataTooLarge
            } else if field == "name" {
                ResponseError::InvalidTopicException
            } else if field.starts_with("records") {
                ResponseError::InvalidRecord
            } else {
                ResponseError::InvalidRequest
            }
        }
        Error::TopicNotFound { .. } => ResponseError::UnknownTopicOrPartition,
        Error::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        Error::GroupNotFound { .. } => ResponseError::GroupIdNotFound,
        // Kafka serves no user management; its SCRAM credential calls name
        // these so.
        Error::UserNotFound { .. } => ResponseError::ResourceNotFound,
        Error::UserExists { .. } => ResponseError::DuplicateResource,
        Error::ProducerRefused { refusal, .. } => match refusal {
            ProducerRefusal::SequenceGap => ResponseError::OutOfOrderSequenceNumber,
            ProducerRefusal::UnknownProducerId => ResponseError::UnknownProducerId,
            ProducerRefusal::WrongEpoch => ResponseError::InvalidProducerEpoch,
            // Kafka answers any batch that is neither next nor a retry of
            // one it keeps so.
            ProducerRefusal::StaleSequence => ResponseError::OutOfOrderSequenceNumber,
        },
        Error::FailedPrecondition { .. } => ResponseError::InvalidRequest,
        // A Kafka member cannot join (or commit into) a group whose live
        // members use Brooklet's own group protocol, and the reverse.
        Error::GroupKindConflict { .. } => ResponseError::InconsistentGroupProtocol,
        Error::Membership { refusal, .. } => match refusal {
            MembershipRefusal::UnknownMember => ResponseError::UnknownMemberId,
            MembershipRefusal::IllegalGeneration => ResponseError::IllegalGeneration,
            MembershipRefusal::RebalanceInProgress => ResponseError::RebalanceInProgress,
            MembershipRefusal::InconsistentProtocol => ResponseError::InconsistentGroupProtocol,
            MembershipRefusal::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
            MembershipRefusal::MemberIdRequired { .. } => ResponseError::MemberIdRequired,
            MembershipRefusal::FencedInstance => ResponseError::FencedInstanceId,
            MembershipRefusal::GroupMaxSize => ResponseError::GroupMaxSizeReached,
        },
        Error::Denied(d) => denied_error(d),
        Error::ShuttingDown => ResponseError::NotLeaderOrFollower,
        Error::DiskFull { .. } => ResponseError::KafkaStorageError,
        Error::Storage(e) => {
            tracing::error!(error = %error_chain(err), "storage error");
            match e.kind() {
                StorageErrorKind::Corrupt => ResponseError::CorruptMessage,
                StorageErrorKind::DiskFull | StorageErrorKind::Io | StorageErrorKind::Engine => {
                    ResponseError::KafkaStorageError
                }
            }
        }
    }
}

/// The Kafka error for a denial: by the type of the resource denied.
pub(crate) fn denied_error(denied: &Denied) -> ResponseError {
    match denied.resource_type {
        ResourceType::Topic => ResponseError::TopicAuthorizationFailed,
        ResourceType::Group => ResponseError::GroupAuthorizationFailed,
        ResourceType::Cluster => ResponseError::ClusterAuthorizationFailed,
    }
}

/// The Kafka error for a core error from creating a topic or checking a
/// new one: a bad partition count or config has its own code there.
pub(crate) fn create_topic_error(err: &Error) -> ResponseError {
    match err {
        Error::InvalidArgument { field, .. } if field == "partitions" => ResponseError::InvalidPartitions,
        Error::InvalidArgument { field, .. } if field.starts_with("config[") => ResponseError::InvalidConfig,
        _ => kafka_error(err),
    }
}

/// The error code for `err`.
pub(crate) fn code(err: &Error) -> i16 {
    kafka_error(err).code()
}

/// The error code for `err` from a group API: at shutdown the coordinator
/// is not available (clients look for it again), rather than a partition's
/// leader.
pub(crate) fn group_code(err: &Error) -> i16 {
    match err {
        Error::ShuttingDown => ResponseError::CoordinatorNotAvailable.code(),
        other => code(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_kafka_codes() {
        let not_found = Error::TopicNotFound { topic: "t".into() };
        assert_eq!(code(&not_found), 3);
        let out = Error::OffsetOutOfRange {
            topic: "t".into(),
            partition: 0,
            offset: 9,
            log_start: 0,
            high_watermark: 1,
        };
        assert_eq!(code(&out), 1);
        assert_eq!(code(&Error::invalid("records[0].partition", "7 is not below")), 3);
        assert_eq!(
            code(&Error::RecordTooLarge { field: "records[0]".into(), size: 9, limit: 1 }),
            10,
            "MESSAGE_TOO_LARGE"
        );
        assert_eq!(code(&Error::invalid("records", "at least one record is required")), 87);
        assert_eq!(code(&Error::invalid("name", "bad")), 17);
        let refused = |refusal| Error::ProducerRefused { refusal, reason: String::new() };
        assert_eq!(code(&refused(ProducerRefusal::SequenceGap)), 45);
        assert_eq!(code(&refused(ProducerRefusal::UnknownProducerId)), 59);
        assert_eq!(code(&refused(ProducerRefusal::WrongEpoch)), 47);
        let create = |field: &str| create_topic_error(&Error::invalid(field, "bad")).code();
        assert_eq!(create("partitions"), 37);
        assert_eq!(create("config[retention.ms]"), 40);
        assert_eq!(create("name"), 17);
        assert_eq!(create_topic_error(&Error::TopicExists { topic: "t".into() }).code(), 36);
        assert_eq!(code(&refused(ProducerRefusal::StaleSequence)), 45);
        let membership = |refusal| Error::Membership { refusal, reason: String::new() };
        assert_eq!(code(&membership(MembershipRefusal::UnknownMember)), 25);
        assert_eq!(code(&membership(MembershipRefusal::IllegalGeneration)), 22);
        assert_eq!(code(&membership(MembershipRefusal::RebalanceInProgress)), 27);
        assert_eq!(code(&membership(MembershipRefusal::InconsistentProtocol)), 23);
        assert_eq!(code(&membership(MembershipRefusal::InvalidSessionTimeout)), 26);
        assert_eq!(code(&membership(MembershipRefusal::MemberIdRequired { member_id: "m".into() })), 79);
        assert_eq!(code(&membership(MembershipRefusal::GroupMaxSize)), 81);
        assert_eq!(code(&membership(MembershipRefusal::FencedInstance)), 82);
        let conflict =
            Error::GroupKindConflict { group: "g".into(), in_use_by: brooklet_core::GroupKind::Broker };
        assert_eq!(code(&conflict), 23);
        assert_eq!(code(&Error::invalid("offsets[2].metadata", "too long")), 12);
        assert_eq!(code(&Error::invalid("group", "empty")), 24);
        assert_eq!(group_code(&Error::ShuttingDown), 15);
        let denied = |resource_type| {
            Error::Denied(Denied {
                principal: None,
                operation: brooklet_core::Operation::Read,
                resource_type,
                resource_name: String::new(),
            })
        };
        assert_eq!(code(&denied(ResourceType::Topic)), 29, "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(group_code(&denied(ResourceType::Group)), 30, "GROUP_AUTHORIZATION_FAILED");
        assert_eq!(code(&denied(ResourceType::Cluster)), 31, "CLUSTER_AUTHORIZATION_FAILED");
    }
}
