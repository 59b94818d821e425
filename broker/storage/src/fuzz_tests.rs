//! Property tests of the stored batch decoder: stored values that are
//! arbitrary bytes, or valid batches mutated (with their payload length and
//! CRC recomputed, so that mutations reach the records, or not), are read
//! whole or refused as corrupt, never with a panic; through the decoders
//! and through a topic's reads.
//!
//! `PROPTEST_CASES` sets the cases per property (256 by default); failures
//! proptest finds are kept in `proptest-regressions/` and replayed first,
//! and the inputs in `corpus/batches/` are replayed on every run.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use crate::batch::{self, EncodedBatch, HEADER_LEN, ProducerSeq};
use crate::record::{Header, Record, StoredRecords};
use crate::{Storage, StorageConfig, StorageErrorKind, TopicMeta, TopicStore, keys};

fn record() -> impl Strategy<Value = Record> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from);
    let header = ("[a-z]{0,4}", bytes()).prop_map(|(name, value)| Header { name, value });
    (
        any::<i64>(),
        proptest::option::of(bytes()),
        proptest::option::of(bytes()),
        proptest::collection::vec(header, 0..3),
    )
        .prop_map(|(timestamp_ms, key, value, headers)| Record {
            offset_delta: 0,
            timestamp_ms,
            key,
            value,
            headers,
        })
}

/// A valid stored value: a few records, idempotent or not, at a base
/// offset.
fn stored_value() -> impl Strategy<Value = Vec<u8>> {
    let producer = proptest::option::of((1..u64::MAX, any::<u64>()))
        .prop_map(|p| p.map(|(producer_id, base_sequence)| ProducerSeq { producer_id, base_sequence }));
    (proptest::collection::vec(record(), 0..4), producer, 0..u64::MAX / 2).prop_map(
        |(mut records, producer, base)| {
            for (i, r) in records.iter_mut().enumerate() {
                r.offset_delta = i as u32;
            }
            EncodedBatch::encode(&records, producer).into_value(base)
        },
    )
}

/// One change to a stored value.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(f64),
    Flip(f64, u8),
    /// Overwrite 4 or 8 bytes with all ones, a huge count or length.
    Huge(f64, bool),
    Insert(f64, Vec<u8>),
    Remove(f64, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        at.clone().prop_map(Mutation::Truncate),
        (at.clone(), 0..8u8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (at.clone(), any::<bool>()).prop_map(|(a, w)| Mutation::Huge(a, w)),
        (at.clone(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(a, b)| Mutation::Insert(a, b)),
        (at, 1..16u8).prop_map(|(a, n)| Mutation::Remove(a, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    let pos = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Truncate(f) => bytes.truncate(pos(*f, len)),
            Mutation::Flip(f, bit) if len > 0 => bytes[pos(*f, len - 1)] ^= 1 << bit,
            Mutation::Flip(..) => {}
            Mutation::Huge(f, wide) => {
                let at = pos(*f, len);
                let end = (at + if *wide { 8 } else { 4 }).min(len);
                bytes[at..end].fill(0xff);
            }
            Mutation::Insert(f, b) => {
                let at = pos(*f, len);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(f, n) => {
                let at = pos(*f, len);
                bytes.drain(at..(at + usize::from(*n)).min(len));
            }
        }
    }
    bytes
}

/// Rewrites a stored value's payload length and CRC to match its payload.
fn fix(value: &mut [u8]) {
    if value.len() < HEADER_LEN {
        return;
    }
    let len = (value.len() - HEADER_LEN) as u32;
    value[45..49].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&value[HEADER_LEN..]);
    value[49..53].copy_from_slice(&crc.to_be_bytes());
}

/// Every decoder of a stored value; none may panic.
fn decode_all(value: &[u8]) {
    let value = Bytes::copy_from_slice(value);
    let _ = batch::read_header(&value);
    let _ = batch::decode(value.clone());
    if let Ok((header, records)) = batch::split(value) {
        let kept = StoredRecords::within(header.base_offset, records, 0, u64::MAX);
        let _ = (kept.next_offset(), kept.decode());
    }
}

/// A topic store in a temporary directory: built by each test, shared by
/// its cases, and removed when the test ends.
struct Fixture {
    store: TopicStore,
    _storage: Storage,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&StorageConfig {
            path: dir.path().to_path_buf(),
            cache_capacity: 8 << 20,
            flush_every_ms: None,
            flush_max_delay: std::time::Duration::ZERO,
        })
        .unwrap();
        let meta = TopicMeta { name: "t".into(), id: "id".into(), partitions: 1, config: BTreeMap::new() };
        let store = storage.create_topic(&meta).unwrap();
        Fixture { store, _storage: storage, _dir: dir }
    }

    /// Stores `value` as partition 0's batch at `base`, after a valid batch
    /// at offset 0, and reads the partition every way a topic is read: each
    /// read succeeds or says the batch is corrupt.
    fn read_stored(&self, value: Vec<u8>, base: u64) {
        let store = &self.store;
        store.tree.clear().unwrap();
        let first = EncodedBatch::encode(
            &[Record { value: Some(Bytes::from_static(b"v")), ..Record::default() }],
            None,
        );
        store.tree.insert(keys::batch(0, 0), first.into_value(0)).unwrap();
        store.tree.insert(keys::batch(0, base.max(1)), value).unwrap();
        let corrupt = |what: &str, e: crate::StorageError| {
            assert_eq!(e.kind(), StorageErrorKind::Corrupt, "{what}: {e}");
        };
        if let Err(e) = store.read(0, 0, u64::MAX, 1 << 20) {
            corrupt("read", e);
        }
        for batch in store.batches(0, 0, u64::MAX).unwrap() {
            if let Err(e) = batch {
                corrupt("batches", e);
            }
        }
        for header in store.headers(0, 0, u64::MAX).unwrap() {
            if let Err(e) = header {
                corrupt("headers", e);
            }
        }
        if let Err(e) = store.bounds(0) {
            corrupt("bounds", e);
        }
    }
}

#[test]
fn the_corpus_of_stored_values_is_read_or_refused_as_corrupt() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/batches");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    let fixture = Fixture::new();
    for path in files {
        let value = std::fs::read(&path).unwrap();
        decode_all(&value);
        fixture.read_stored(value, 5);
    }
}

#[test]
fn valid_stored_values_decode_and_read() {
    let fixture = Fixture::new();
    proptest!(|(value in stored_value())| {
        batch::decode(Bytes::from(value.clone())).unwrap();
        let base = batch::read_header(&value).unwrap().base_offset;
        fixture.read_stored(value, base);
    });
}

#[test]
fn arbitrary_stored_values_are_decoded_or_corrupt() {
    let fixture = Fixture::new();
    let bytes = proptest::collection::vec(any::<u8>(), 0..200);
    proptest!(|(mut value in bytes, version_one in any::<bool>(), fixed in any::<bool>())| {
        if version_one && !value.is_empty() {
            value[0] = 1;
        }
        if fixed {
            fix(&mut value);
        }
        decode_all(&value);
        fixture.read_stored(value, 7);
    });
}

#[test]
fn mutated_stored_values_are_decoded_or_corrupt() {
    let fixture = Fixture::new();
    let mutations = proptest::collection::vec(mutation(), 1..4);
    proptest!(|(value in stored_value(), mutations in mutations, fixed in any::<bool>())| {
        let mut value = mutate(value, &mutations);
        if fixed {
            fix(&mut value);
        }
        decode_all(&value);
        fixture.read_stored(value, 3);
    });
}
