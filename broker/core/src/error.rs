//! The core's error type. It says what went wrong in terms a client can act
//! on; each protocol adapter turns it into its own errors in one place.

use brooklet_storage::StorageError;

/// Result with the broker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a broker operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid; `field` names it (e.g. `records[3].partition`).
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: String,
        /// Why, naming the limit.
        reason: String,
    },
    /// A record is larger than its topic allows (`max.message.bytes`).
    #[error(
        "invalid {field}: {size} bytes (key + value + headers) exceeds the maximum record size of {limit} bytes"
    )]
    RecordTooLarge {
        /// The record (e.g. `records[3]`).
        field: String,
        /// Its size: key + value + headers.
        size: usize,
        /// The topic's largest record.
        limit: usize,
    },
    /// The topic does not exist.
    #[error("topic `{topic}` does not exist")]
    TopicNotFound {
        /// Topic name.
        topic: String,
    },
    /// A topic of that name exists already.
    #[error("topic `{topic}` already exists")]
    TopicExists {
        /// Topic name.
        topic: String,
    },
    /// An offset outside the partition's log.
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: \
         log start offset is {log_start}, high watermark is {high_watermark}"
    )]
    OffsetOutOfRange {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// The requested offset.
        offset: u64,
        /// First offset in the log.
        log_start: u64,
        /// Next offset to be written.
        high_watermark: u64,
    },
    /// The principal may not do this (see `acl`).
    #[error(transparent)]
    Denied(#[from] crate::acl::Denied),
    /// No user of that name exists.
    #[error("user `{name}` does not exist")]
    UserNotFound {
        /// User name.
        name: String,
    },
    /// A user of that name exists already.
    #[error("user `{name}` already exists")]
    UserExists {
        /// User name.
        name: String,
    },
    /// The group has neither live members nor committed offsets.
    #[error("group `{group}` does not exist")]
    GroupNotFound {
        /// Group id.
        group: String,
    },
    /// The request is valid but the system is not in a state to accept it
    /// (a fenced member, a partition the member does not own, a group with
    /// live members).
    #[error("{reason}")]
    FailedPrecondition {
        /// Why, and what to do.
        reason: String,
    },
    /// An idempotent producer's batch is refused, before anything of its
    /// request is written.
    #[error("{reason}")]
    ProducerRefused {
        /// What the producer got wrong.
        refusal: ProducerRefusal,
        /// Why, and what to do.
        reason: String,
    },
    /// The data directory's disk has less free space than the broker keeps
    /// in reserve: writes are refused until space returns (space that
    /// deletes freed inside the database counts for up to half the
    /// reserve); reads go on.
    #[error(
        "disk full: {free} bytes free in {dir} and {reusable} freed inside the database, \
         below the {min} kept in reserve (--min-free-mb); writes resume when space is freed \
         (delete topics or records), reads continue"
    )]
    DiskFull {
        /// The data directory.
        dir: String,
        /// Bytes free on the file system.
        free: u64,
        /// Bytes that deletes freed inside the database, as counted.
        reusable: u64,
        /// The reserve.
        min: u64,
    },
    /// A group id in use by live members of one kind of group refuses
    /// members of the other kind.
    #[error(
        "group `{group}` has live {in_use_by} members; {} members cannot join it until they have left",
        in_use_by.other()
    )]
    GroupKindConflict {
        /// Group id.
        group: String,
        /// The kind of the group's live members.
        in_use_by: GroupKind,
    },
    /// A classic group's member request is refused by the membership rules.
    #[error("{reason}")]
    Membership {
        /// Which rule refused it.
        refusal: MembershipRefusal,
        /// Why, and what to do.
        reason: String,
    },
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an idempotent producer's batch is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerRefusal {
    /// The producer id was never issued by this broker.
    UnknownProducerId,
    /// The epoch is not the producer id's current one.
    WrongEpoch,
    /// Batches before this one never arrived.
    SequenceGap,
    /// The sequence is older than the batches kept, or matches none of them.
    StaleSequence,
}

/// The two kinds of consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// Members heartbeat and the broker assigns partitions (the gRPC API).
    Broker,
    /// Members join and sync, and their leader assigns (Kafka's classic
    /// group protocol).
    Classic,
}

impl GroupKind {
    /// The other kind.
    pub fn other(self) -> GroupKind {
        match self {
            GroupKind::Broker => GroupKind::Classic,
            GroupKind::Classic => GroupKind::Broker,
        }
    }
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GroupKind::Broker => "broker-assigned (gRPC)",
            GroupKind::Classic => "Kafka classic",
        })
    }
}

/// Why a classic group refuses a member's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipRefusal {
    /// The member id is not (or no longer) in the group.
    UnknownMember,
    /// The generation is not the group's current one.
    IllegalGeneration,
    /// The group is rebalancing: the member must rejoin.
    RebalanceInProgress,
    /// The protocol type or protocols do not match the group's.
    InconsistentProtocol,
    /// The session timeout is outside the broker's bounds.
    InvalidSessionTimeout,
    /// A new member must join again with the member id given here.
    MemberIdRequired {
        /// The id to join with.
        member_id: String,
    },
    /// The group instance id belongs to another member id: a newer
    /// instance of the same static member replaced this one.
    FencedInstance,
    /// The group has as many members as it may have.
    GroupMaxSize,
}

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidArgument { field: field.into(), reason: reason.into() }
    }
}
