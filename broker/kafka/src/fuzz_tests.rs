//! Property tests of every decoder here that reads a client's bytes: frames
//! and request headers, each implemented request at each version, the
//! consumer protocol's subscriptions and assignments, produced record
//! batches and their compression. Inputs are arbitrary bytes and mutations
//! of valid encodings (cut short, bits flipped, counts made huge, bytes
//! inserted or removed); the property is that decoding returns a value or
//! an error and never panics.
//!
//! A counting allocator bounds what decoding a frame allocates: at most 64
//! times the frame's size plus 1 MiB, measured in a process of its own.
//!
//! `PROPTEST_CASES` sets the cases per property (256 by default); failures
//! proptest finds are kept in `proptest-regressions/` and replayed first,
//! and the inputs in `corpus/` are replayed on every run.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use crate::frame::{self, FrameError, Parsed, SUPPORTED};
use crate::records::{DecompressBudget, decode_produce};

/// Decodes a frame as the server does before handling it: its header, then
/// its body as the request its API and version name.
fn decode_frame(frame: Bytes) -> Result<(), FrameError> {
    let (api, version, body) = match frame::parse(frame)? {
        Parsed::Request { api, version, body, .. } => (api, version, body),
        Parsed::UnsupportedApiVersions { .. } => return Ok(()),
    };
    decode_body(api, version, body)
}

/// Decodes `body` as the request `api` at `version`; a consumer group's
/// protocol metadata and assignments are read as the group code reads them.
fn decode_body(api: ApiKey, version: i16, body: Bytes) -> Result<(), FrameError> {
    macro_rules! as_request {
        ($($key:ident => $ty:ty),* $(,)?) => {
            match api {
                $(ApiKey::$key => { frame::decode::<$ty>(api, version, body)?; })*
                ApiKey::JoinGroup => {
                    let request: JoinGroupRequest = frame::decode(api, version, body)?;
                    for p in &request.protocols {
                        crate::groups::subscription_topics(crate::groups::CONSUMER, &p.metadata);
                    }
                }
                ApiKey::SyncGroup => {
                    let request: SyncGroupRequest = frame::decode(api, version, body)?;
                    for a in &request.assignments {
                        crate::groups::assignment_partitions(crate::groups::CONSUMER, &a.assignment);
                    }
                }
                other => panic!("{other:?} is in SUPPORTED but not decoded here"),
            }
        };
    }
    as_request! {
        ApiVersions => ApiVersionsRequest,
        Metadata => MetadataRequest,
        Produce => ProduceRequest,
        Fetch => FetchRequest,
        InitProducerId => InitProducerIdRequest,
        ListOffsets => ListOffsetsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        DescribeConfigs => DescribeConfigsRequest,
        FindCoordinator => FindCoordinatorRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        ListGroups => ListGroupsRequest,
        DescribeGroups => DescribeGroupsRequest,
        DeleteGroups => DeleteGroupsRequest,
        AlterConfigs => AlterConfigsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        OffsetDelete => OffsetDeleteRequest,
        SaslHandshake => SaslHandshakeRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
    }
    Ok(())
}

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn topic() -> TopicName {
    TopicName(s("topic"))
}

fn group() -> GroupId {
    GroupId(s("group"))
}

/// A consumer's subscription (version 3) to two topics, owning a partition.
fn subscription() -> Bytes {
    let owned = ConsumerProtocolSubscription::default()
        .with_topics(vec![s("a"), s("b")])
        .with_user_data(Some(Bytes::from_static(b"user")))
        .with_owned_partitions(vec![
            consumer_protocol_subscription::TopicPartition::default()
                .with_topic(topic())
                .with_partitions(vec![0, 1]),
        ]);
    versioned(3, &owned)
}

/// A consumer's assignment (version 3) of two partitions.
fn assignment() -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        consumer_protocol_assignment::TopicPartition::default()
            .with_topic(topic())
            .with_partitions(vec![0, 1]),
    ]);
    versioned(3, &a)
}

fn versioned(version: i16, message: &impl Encodable) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(version);
    message.encode(&mut out, version).unwrap();
    out.freeze()
}

/// `request` encoded at `version`, or the default request if it has a
/// field the version lacks (which the encoder refuses).
fn encoded<R: Encodable + Default>(request: R, version: i16) -> BytesMut {
    let mut out = BytesMut::new();
    if request.encode(&mut out, version).is_err() {
        out.clear();
        R::default().encode(&mut out, version).unwrap();
    }
    out
}

/// A request of `api` at `version` with two elements in each of its
/// arrays (where the version has them), encoded: a seed that reaches every
/// array of the schema.
fn seed_body(api: ApiKey, version: i16) -> BytesMut {
    use kafka_protocol::messages::{
        alter_configs_request as ac, create_topics_request as ct, delete_topics_request as dt,
        describe_configs_request as dc, fetch_request as fr, incremental_alter_configs_request as iac,
        join_group_request as jg, leave_group_request as lg, list_offsets_request as lo,
        metadata_request as md, offset_commit_request as oc, offset_delete_request as od,
        offset_fetch_request as of, produce_request as pr, sync_group_request as sg,
    };
    let batch = Bytes::from(valid_batch(0));
    match api {
        ApiKey::ApiVersions => encoded(
            ApiVersionsRequest::default()
                .with_client_software_name(s("fuzz"))
                .with_client_software_version(s("1")),
            version,
        ),
        ApiKey::Metadata => encoded(
            MetadataRequest::default()
                .with_topics(Some(two(md::MetadataRequestTopic::default().with_name(Some(topic()))))),
            version,
        ),
        ApiKey::Produce => {
            let p = pr::PartitionProduceData::default().with_index(0).with_records(Some(batch));
            let t = pr::TopicProduceData::default().with_name(topic()).with_partition_data(two(p));
            encoded(ProduceRequest::default().with_acks(1).with_topic_data(two(t)), version)
        }
        ApiKey::Fetch => {
            let p = fr::FetchPartition::default().with_fetch_offset(3);
            let t = fr::FetchTopic::default().with_topic(topic()).with_partitions(two(p));
            let f = fr::ForgottenTopic::default().with_topic(topic()).with_partitions(vec![1, 2]);
            let mut r = FetchRequest::default().with_topics(two(t));
            if version >= 7 {
                r.forgotten_topics_data = two(f);
            }
            encoded(r, version)
        }
        ApiKey::InitProducerId => encoded(
            InitProducerIdRequest::default()
                .with_transaction_timeout_ms(1000)
                .with_producer_id(ProducerId(-1)),
            version,
        ),
        ApiKey::ListOffsets => {
            let p = lo::ListOffsetsPartition::default().with_timestamp(-1);
            let t = lo::ListOffsetsTopic::default().with_name(topic()).with_partitions(two(p));
            encoded(ListOffsetsRequest::default().with_topics(two(t)), version)
        }
        ApiKey::CreateTopics => {
            let a = ct::CreatableReplicaAssignment::default().with_broker_ids(two(BrokerId(0)));
            let c = ct::CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(Some(s("1")));
            let t = ct::CreatableTopic::default()
                .with_name(topic())
                .with_assignments(two(a))
                .with_configs(two(c));
            encoded(CreateTopicsRequest::default().with_topics(two(t)), version)
        }
        ApiKey::DeleteTopics => {
            let t = dt::DeleteTopicState::default().with_name(Some(topic()));
            if version >= 6 {
                encoded(DeleteTopicsRequest::default().with_topics(two(t)), version)
            } else {
                encoded(DeleteTopicsRequest::default().with_topic_names(two(topic())), version)
            }
        }
        ApiKey::DescribeConfigs => {
            let r = dc::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("topic"))
                .with_configuration_keys(Some(two(s("retention.ms"))));
            encoded(DescribeConfigsRequest::default().with_resources(two(r)), version)
        }
        ApiKey::OffsetCommit => {
            let p = oc::OffsetCommitRequestPartition::default()
                .with_committed_offset(5)
                .with_committed_metadata(Some(s("m")));
            let t = oc::OffsetCommitRequestTopic::default().with_name(topic()).with_partitions(two(p));
            encoded(OffsetCommitRequest::default().with_group_id(group()).with_topics(two(t)), version)
        }
        ApiKey::OffsetFetch => {
            if version >= 8 {
                let t = of::OffsetFetchRequestTopics::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0, 1]);
                let g =
                    of::OffsetFetchRequestGroup::default().with_group_id(group()).with_topics(Some(two(t)));
                encoded(OffsetFetchRequest::default().with_groups(two(g)), version)
            } else {
                let t = of::OffsetFetchRequestTopic::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0, 1]);
                encoded(
                    OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(two(t))),
                    version,
                )
            }
        }
        ApiKey::FindCoordinator => encoded(
            if version >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(two(s("group")))
            } else {
                FindCoordinatorRequest::default().with_key(s("group"))
            },
            version,
        ),
        ApiKey::JoinGroup => {
            let p =
                jg::JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(subscription());
            let r = JoinGroupRequest::default()
                .with_group_id(group())
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(two(p));
            encoded(r, version)
        }
        ApiKey::Heartbeat => encoded(HeartbeatRequest::default().with_group_id(group()), version),
        ApiKey::LeaveGroup => encoded(
            if version >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(group())
                    .with_members(two(lg::MemberIdentity::default().with_member_id(s("m"))))
            } else {
                LeaveGroupRequest::default().with_group_id(group()).with_member_id(s("m"))
            },
            version,
        ),
        ApiKey::SyncGroup => {
            let a = sg::SyncGroupRequestAssignment::default()
                .with_member_id(s("m"))
                .with_assignment(assignment());
            encoded(SyncGroupRequest::default().with_group_id(group()).with_assignments(two(a)), version)
        }
        ApiKey::DescribeGroups => {
            encoded(DescribeGroupsRequest::default().with_groups(two(group())), version)
        }
        ApiKey::ListGroups => encoded(
            ListGroupsRequest::default()
                .with_states_filter(two(s("Stable")))
                .with_types_filter(two(s("classic"))),
            version,
        ),
        ApiKey::DeleteGroups => {
            encoded(DeleteGroupsRequest::default().with_groups_names(two(group())), version)
        }
        ApiKey::AlterConfigs => {
            let c = ac::AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("1")));
            let r = ac::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("topic"))
                .with_configs(two(c));
            encoded(AlterConfigsRequest::default().with_resources(two(r)), version)
        }
        ApiKey::IncrementalAlterConfigs => {
            let c = iac::AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("1")));
            let r = iac::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("topic"))
                .with_configs(two(c));
            encoded(IncrementalAlterConfigsRequest::default().with_resources(two(r)), version)
        }
        ApiKey::OffsetDelete => {
            let p = od::OffsetDeleteRequestPartition::default().with_partition_index(0);
            let t = od::OffsetDeleteRequestTopic::default().with_name(topic()).with_partitions(two(p));
            encoded(OffsetDeleteRequest::default().with_group_id(group()).with_topics(two(t)), version)
        }
        ApiKey::SaslHandshake => encoded(SaslHandshakeRequest::default().with_mechanism(s("PLAIN")), version),
        ApiKey::SaslAuthenticate => encoded(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0user\0password")),
            version,
        ),
        other => panic!("{other:?} is in SUPPORTED but has no seed"),
    }
}

/// Two of `v`: arrays of two elements.
fn two<T: Clone>(v: T) -> Vec<T> {
    vec![v; 2]
}

/// A whole request frame (without its size): header, then body.
fn seed_frame(api: ApiKey, version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("fuzz")))
        .encode(&mut out, api.request_header_version(version))
        .unwrap();
    out.put(seed_body(api, version));
    out.to_vec()
}

/// Every implemented API at every implemented version.
fn api_versions() -> Vec<(ApiKey, i16)> {
    SUPPORTED.iter().flat_map(|&(api, min, max)| (min..=max).map(move |v| (api, v))).collect()
}

/// One change to an encoding.
#[derive(Clone, Debug)]
enum Mutation {
    /// Cut the bytes at this fraction of their length.
    Truncate(f64),
    /// Flip one bit.
    Flip(f64, u8),
    /// Overwrite bytes with a huge count: an int32, an unsigned varint or
    /// an int16.
    Count(f64, u8),
    /// Insert bytes.
    Insert(f64, Vec<u8>),
    /// Remove up to this many bytes.
    Remove(f64, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        at.clone().prop_map(Mutation::Truncate),
        (at.clone(), 0..8u8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (at.clone(), 0..6u8).prop_map(|(a, k)| Mutation::Count(a, k)),
        (at.clone(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(a, b)| Mutation::Insert(a, b)),
        (at, 1..16u8).prop_map(|(a, n)| Mutation::Remove(a, n)),
    ]
}

/// `bytes` with `mutations` applied in turn.
fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    let pos = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Truncate(f) => bytes.truncate(pos(*f, len)),
            Mutation::Flip(f, bit) if len > 0 => bytes[pos(*f, len - 1)] ^= 1 << bit,
            Mutation::Count(f, kind) => {
                let huge: &[u8] = match kind {
                    0 => &[0x7f, 0xff, 0xff, 0xff],
                    1 => &[0xff, 0xff, 0xff, 0xff],
                    2 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                    3 => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                    4 => &[0x7f, 0xff],
                    _ => &[0x80, 0x00, 0x00, 0x00],
                };
                let at = pos(*f, len);
                let end = (at + huge.len()).min(len);
                bytes.splice(at..end, huge.iter().copied());
            }
            Mutation::Insert(f, b) => {
                let at = pos(*f, len);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(f, n) => {
                let at = pos(*f, len);
                bytes.drain(at..(at + usize::from(*n)).min(len));
            }
            Mutation::Flip(..) => {}
        }
    }
    bytes
}

/// A valid uncompressed RecordBatch v2 of three records, with headers (one
/// of them null) and a null key; an idempotent producer's (epoch 0,
/// sequence 0) if `producer_id` is positive.
fn valid_batch(producer_id: i64) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push(z as u8 | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => {
                varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
            None => varint(out, -1),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    out.extend_from_slice(&[0; 4]); // length, set by fix_batch
    out.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    out.push(2); // magic
    out.extend_from_slice(&[0; 4]); // CRC, set by fix_batch
    out.extend_from_slice(&0i16.to_be_bytes()); // attributes
    out.extend_from_slice(&2i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&1_000i64.to_be_bytes()); // base timestamp
    out.extend_from_slice(&1_002i64.to_be_bytes()); // max timestamp
    let (epoch, sequence) = if producer_id > 0 { (0i16, 0i32) } else { (-1, -1) };
    out.extend_from_slice(&(if producer_id > 0 { producer_id } else { -1 }).to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&3i32.to_be_bytes()); // count
    for i in 0..3i64 {
        let mut r = vec![0]; // attributes
        varint(&mut r, i); // timestamp delta
        varint(&mut r, i); // offset delta
        let key = format!("key {i}");
        nullable(&mut r, (i != 1).then_some(key.as_bytes()));
        nullable(&mut r, Some(format!("value {i}").as_bytes()));
        varint(&mut r, 2);
        nullable(&mut r, Some(b"h"));
        nullable(&mut r, Some(b"v"));
        nullable(&mut r, Some(b"n"));
        nullable(&mut r, None);
        varint(&mut out, r.len() as i64);
        out.extend_from_slice(&r);
    }
    fix_batch(&mut out);
    out
}

/// Where a v2 batch's length, CRC and attributes are, and where its
/// records start.
const LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const RECORDS_AT: usize = 61;

/// `batch` (one v2 batch) with its records compressed by codec `bits` (1
/// gzip, 2 snappy, 3 lz4, 4 zstd), its length and CRC rewritten.
fn compressed(batch: &[u8], bits: u8) -> Vec<u8> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out = BytesMut::from(&batch[..RECORDS_AT]);
    let records = &batch[RECORDS_AT..];
    let put = |b: &mut BytesMut| -> anyhow::Result<()> {
        b.put_slice(records);
        Ok(())
    };
    match bits {
        1 => Gzip::compress(&mut out, put),
        2 => Snappy::compress(&mut out, put),
        3 => Lz4::compress(&mut out, put),
        _ => Zstd::compress(&mut out, put),
    }
    .unwrap();
    out[ATTRIBUTES_AT + 1] |= bits;
    let mut out = out.to_vec();
    fix_batch(&mut out);
    out
}

/// Rewrites the length and CRC of the batch that `batch` starts with, so
/// that a mutated batch passes both checks and reaches its records.
fn fix_batch(batch: &mut [u8]) {
    if batch.len() < RECORDS_AT {
        return;
    }
    let length = (batch.len() - 12) as i32;
    batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
}

/// A valid batch: uncompressed or compressed, idempotent or not.
fn seed_batch() -> impl Strategy<Value = Vec<u8>> {
    (0..5u8, any::<bool>()).prop_map(|(codec, idempotent)| {
        let plain = valid_batch(if idempotent { 9 } else { 0 });
        if codec == 0 { plain } else { compressed(&plain, codec) }
    })
}

/// The corpus of `target`: every file under `corpus/<target>/`.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect()
}

fn decode_batches(bytes: Vec<u8>) {
    // A limit smaller than the compressed seeds decompress to now and then.
    for limit in [1 << 20, 64] {
        let _ = decode_produce(Bytes::from(bytes.clone()), 0, &mut DecompressBudget::new(limit));
    }
}

#[test]
fn every_supported_api_and_version_has_a_seed_that_decodes() {
    for (api, version) in api_versions() {
        let frame = seed_frame(api, version);
        decode_frame(Bytes::from(frame)).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
    }
    for bytes in
        [valid_batch(0), valid_batch(9)].into_iter().chain((1..5).map(|c| compressed(&valid_batch(0), c)))
    {
        let (records, _) = decode_produce(Bytes::from(bytes.clone()), 0, &mut DecompressBudget::new(1 << 20))
            .unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
        assert_eq!(records.len(), 3);
    }
}

#[test]
fn the_corpus_of_frames_and_batches_is_refused_without_a_panic() {
    for (name, bytes) in corpus("frames") {
        assert!(decode_frame(Bytes::from(bytes)).is_err(), "{name} decodes");
    }
    for (name, bytes) in corpus("batches") {
        let decoded = decode_produce(Bytes::from(bytes), 0, &mut DecompressBudget::new(1 << 20));
        assert!(decoded.is_err(), "{name} decodes");
    }
}

/// Counts this test binary's allocations, and fails one past its limit, so
/// that a test can bound what decoding allocates.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Set in the child process that measures, to the directory where it
/// writes each input before decoding it.
const ALLOC_CHILD: &str = "BROOKLET_FUZZ_ALLOC_CHILD";

/// A frame of the seeds' APIs and versions, mutated.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    (proptest::sample::select(api_versions()), proptest::collection::vec(mutation(), 0..4))
        .prop_map(|((api, version), mutations)| mutate(seed_frame(api, version), &mutations))
}

#[test]
fn decoding_a_frame_allocates_at_most_64_times_its_size_plus_1_mib() {
    const NAME: &str = "fuzz_tests::decoding_a_frame_allocates_at_most_64_times_its_size_plus_1_mib";
    let Some(dir) = std::env::var_os(ALLOC_CHILD) else {
        // The other tests of this binary allocate at the same time: the
        // measure is taken in a child process that runs this test alone.
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--test-threads=1", "--nocapture"])
            .env(ALLOC_CHILD, dir.path())
            .output()
            .unwrap();
        let input = std::fs::read(dir.path().join("input")).unwrap_or_default();
        assert!(
            out.status.success(),
            "decoding allocated past its bound, or panicked, on the frame {input:02x?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran the test");
        return;
    };
    let input = std::path::Path::new(&dir).join("input");
    let check = |frame: Vec<u8>| {
        std::fs::write(&input, &frame).unwrap();
        let bound = 64 * frame.len() + (1 << 20);
        let frame = Bytes::from(frame);
        // An allocation past the limit fails, which aborts the child.
        ALLOCATOR.set_limit(ALLOCATOR.allocated() + bound).unwrap();
        let _ = decode_frame(frame);
        ALLOCATOR.set_limit(usize::MAX).unwrap();
    };
    for (api, version) in api_versions() {
        check(seed_frame(api, version));
    }
    for (_, frame) in corpus("frames") {
        check(frame);
    }
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::default();
    for _ in 0..runner.config().cases {
        check(mutated_frame().new_tree(&mut runner).unwrap().current());
    }
}

proptest! {
    #[test]
    fn arbitrary_frames_are_decoded_or_refused(
        (api, version) in proptest::sample::select(api_versions()),
        tail in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        // A header naming a real API and version, so that the body reaches
        // the request's decoder.
        let mut frame = vec![];
        frame.extend_from_slice(&(api as i16).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&tail);
        let _ = decode_frame(Bytes::from(frame));
        let _ = decode_frame(Bytes::from(tail));
    }

    #[test]
    fn mutated_requests_are_decoded_or_refused(
        (api, version) in proptest::sample::select(api_versions()),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let frame = mutate(seed_frame(api, version), &mutations);
        let _ = decode_frame(Bytes::from(frame));
        // The body alone, its header intact.
        let body = mutate(seed_body(api, version).to_vec(), &mutations);
        let _ = decode_body(api, version, Bytes::from(body));
    }

    #[test]
    fn mutated_consumer_protocol_messages_are_read_or_ignored(
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let _ = crate::groups::subscription_topics(crate::groups::CONSUMER, &Bytes::from(mutate(subscription().to_vec(), &mutations)));
        let _ = crate::groups::assignment_partitions(crate::groups::CONSUMER, &Bytes::from(mutate(assignment().to_vec(), &mutations)));
    }

    #[test]
    fn mutated_record_batches_are_decoded_or_refused(
        seed in seed_batch(),
        mutations in proptest::collection::vec(mutation(), 1..4),
        fix in any::<bool>(),
        twice in any::<bool>(),
    ) {
        let mut bytes = mutate(seed, &mutations);
        // A recomputed length and CRC let the mutation reach the records
        // (or the compressed stream).
        if fix {
            fix_batch(&mut bytes);
        }
        if twice {
            bytes.extend_from_slice(&valid_batch(0));
        }
        decode_batches(bytes);
    }

    #[test]
    fn arbitrary_records_behind_a_valid_header_are_decoded_or_refused(
        codec in 0..5u8,
        count in prop_oneof![1..8i32, Just(i32::MAX)],
        records in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut batch = valid_batch(0)[..RECORDS_AT].to_vec();
        batch[ATTRIBUTES_AT + 1] = codec;
        batch[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&records);
        fix_batch(&mut batch);
        decode_batches(batch);
    }

    #[test]
    fn arbitrary_compressed_bytes_are_decompressed_or_refused(
        codec in 1..5i16,
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let codec = crate::compression::Codec::from_attributes(codec).unwrap();
        let _ = crate::compression::decompress(codec, &bytes, 1 << 16);
    }
}
