//! Property tests of the produce path's conversion and validation: arbitrary
//! `ProduceRequest`s (built field by field, decoded from arbitrary bytes, or
//! decoded from mutated encodings) go through the produce service over a
//! real core; each is appended or refused with a status, never a panic, and
//! an invalid argument names its field.
//!
//! `PROPTEST_CASES` sets the cases per property (256 by default); failures
//! proptest finds are kept in `proptest-regressions/` and replayed first.

use brooklet_core::{Core, CoreConfig};
use brooklet_metrics::Metrics;
use brooklet_proto::v1 as pb;
use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Request};

use crate::Services;
use pb::producer_service_server::ProducerService as _;

/// A runtime, the services over a core with topic `t` (3 partitions), a
/// producer id the core issued, and the directory: built by each test, shared
/// by its cases, and removed when the test ends.
struct Fixture {
    rt: tokio::runtime::Runtime,
    services: Services,
    producer_id: u64,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let services = rt.block_on(async {
            let tasks = TaskTracker::new();
            let core = Core::open(&CoreConfig::new(dir.path()), None, &tasks).unwrap();
            core.log().create_topic("t", 3, Default::default()).await.unwrap();
            let authorizer = brooklet_core::Authorizer::allow_all(core.acls().clone());
            Services::new(core, CancellationToken::new(), tasks, Metrics::new(), Vec::new(), authorizer)
        });
        let producer_id = services.core.log().new_producer_id().unwrap().id;
        Fixture { rt, services, producer_id, _dir: dir }
    }

    /// Produces `request`; a refusal must be a status a client can act on,
    /// and an invalid argument must name a field of the request.
    fn produce(&self, request: pb::ProduceRequest) {
        let Err(status) = self.rt.block_on(self.services.produce(Request::new(request))) else { return };
        let message = status.message();
        assert!(
            !matches!(status.code(), Code::Unknown | Code::Internal | Code::DataLoss | Code::Ok),
            "{status:?}"
        );
        assert!(!message.is_empty(), "{status:?}");
        if status.code() == Code::InvalidArgument {
            let field =
                message.strip_prefix("invalid ").and_then(|m| m.split(':').next()).unwrap_or_default();
            let root = field.split(['[', '.']).next().unwrap_or_default();
            assert!(FIELDS.contains(&root), "`{message}` names no field of the request");
        }
    }
}

/// The fields of `ProduceRequest` and of its records that an invalid
/// argument may name.
const FIELDS: &[&str] = &["topic", "records", "acks", "producer_id", "producer_epoch", "base_sequences"];

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn record() -> impl Strategy<Value = pb::ProduceRecord> {
    let header = (".{0,6}", bytes(8)).prop_map(|(name, value)| pb::Header { name, value });
    (
        proptest::option::of(prop_oneof![8 => 0..3u32, 1 => any::<u32>()]),
        proptest::option::of(bytes(16)),
        bytes(32),
        proptest::collection::vec(header, 0..3),
        proptest::option::of(prop_oneof![4 => 0..2_000_000_000_000i64, 1 => any::<i64>()]),
    )
        .prop_map(|(partition, key, value, headers, timestamp_ms)| pb::ProduceRecord {
            partition,
            key,
            value,
            headers,
            timestamp_ms,
        })
}

fn request(producer_id: u64) -> impl Strategy<Value = pb::ProduceRequest> {
    (
        prop_oneof![8 => Just("t".to_string()), 1 => Just("missing".to_string()), 1 => ".{0,8}"],
        proptest::collection::vec(record(), 0..6),
        prop_oneof![0..4i32, any::<i32>()],
        prop_oneof![6 => Just(0u64), 3 => Just(producer_id), 1 => any::<u64>()],
        prop_oneof![8 => Just(0u32), 1 => any::<u32>()],
        proptest::collection::btree_map(0..4u32, prop_oneof![0..10u64, any::<u64>()], 0..4),
    )
        .prop_map(|(topic, records, acks, producer_id, producer_epoch, base_sequences)| {
            pb::ProduceRequest {
                topic,
                records,
                acks,
                producer_id,
                producer_epoch,
                base_sequences: base_sequences.into_iter().collect(),
            }
        })
}

#[test]
fn arbitrary_produce_requests_are_appended_or_refused_naming_a_field() {
    let fixture = Fixture::new();
    proptest!(|(request in request(fixture.producer_id))| fixture.produce(request));
}

#[test]
fn produce_requests_decoded_from_arbitrary_bytes_are_appended_or_refused() {
    let fixture = Fixture::new();
    proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..128))| {
        if let Ok(request) = pb::ProduceRequest::decode(&bytes[..]) {
            fixture.produce(request);
        }
    });
}

#[test]
fn produce_requests_decoded_from_mutated_encodings_are_appended_or_refused() {
    let fixture = Fixture::new();
    let flips = proptest::collection::vec((0.0..1.0f64, 0..8u8), 1..4);
    proptest!(|(request in request(fixture.producer_id), flips in flips, cut in 0.0..=1.0f64)| {
        let mut encoded = request.encode_to_vec();
        for (at, bit) in flips {
            if !encoded.is_empty() {
                let i = ((at * encoded.len() as f64) as usize).min(encoded.len() - 1);
                encoded[i] ^= 1 << bit;
            }
        }
        encoded.truncate((cut * encoded.len() as f64) as usize);
        if let Ok(request) = pb::ProduceRequest::decode(&encoded[..]) {
            fixture.produce(request);
        }
    });
}
