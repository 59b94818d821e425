//! Records as the broker appends, stores and serves them.
//!
//! These are prost messages so that the storage layer can encode them without
//! a second format. Their field numbers match `brooklet.v1.Record` and
//! `brooklet.v1.Header`, so a stored record is also its gRPC wire encoding
//! (pinned by a test in brooklet-grpc): reads hand out [`StoredRecords`],
//! the stored encodings, and the gRPC adapter serves them as they are.

use bytes::Bytes;
use prost::Message;

/// One record of a batch. Its offset is the batch's base offset plus
/// `offset_delta`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// Position in the batch, counted from the batch's base offset.
    #[prost(uint32, tag = "1")]
    pub offset_delta: u32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp_ms: i64,
    /// Optional key; it decides the partition when the producer names none.
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub key: Option<Bytes>,
    /// The payload: `None` is a null value (a tombstone), distinct from an
    /// empty one. Field 4 is absent for a null value and present, possibly
    /// empty, otherwise; a reader of `brooklet.v1.Record` (whose value is not
    /// optional) sees both as empty. Records stored with an empty value
    /// before values could be null read as null.
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub value: Option<Bytes>,
    /// Ordered headers; names may repeat.
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
}

/// A record header.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    /// Header name (UTF-8).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Header value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

impl Record {
    /// The bytes a record counts against the record size limit: key, value,
    /// and every header's name and value.
    pub fn size(&self) -> usize {
        record_size(self.key.as_deref(), self.value.as_deref(), &self.headers)
    }
}

/// What a record counts against the size limit and in the byte metrics:
/// key, value, and every header's name and value. The one definition.
pub fn record_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
}

/// Records of one stored batch as read: each record's stored encoding (a
/// [`Record`] message without its length prefix) and its offset, in offset
/// order. Serving them needs no decoding; [`StoredRecords::decode`] decodes
/// them for an adapter that needs their fields.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecords {
    base_offset: u64,
    /// (offset delta from `base_offset`, encoding).
    records: Vec<(u32, Bytes)>,
}

impl StoredRecords {
    /// The records of a batch at `base_offset` whose offsets are in
    /// `[from, until)`.
    pub(crate) fn within(base_offset: u64, mut records: Vec<(u32, Bytes)>, from: u64, until: u64) -> Self {
        records.retain(|(delta, _)| {
            // A damaged record's delta may run past the largest offset.
            let offset = base_offset.saturating_add(u64::from(*delta));
            offset >= from && offset < until
        });
        StoredRecords { base_offset, records }
    }

    /// The offset the batch's deltas count from; its first record here may
    /// be later (the read started inside the batch, or compaction removed
    /// records).
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> u64 {
        self.records.last().map_or(self.base_offset, |(delta, _)| {
            self.base_offset.saturating_add(u64::from(*delta)).saturating_add(1)
        })
    }

    /// Bytes of the records' encodings.
    pub fn encoded_bytes(&self) -> u64 {
        self.records.iter().map(|(_, r)| r.len() as u64).sum()
    }

    /// Each record's encoding, in offset order: the wire encoding of
    /// `brooklet.v1.Record`.
    pub fn encodings(&self) -> impl ExactSizeIterator<Item = &Bytes> {
        self.records.iter().map(|(_, r)| r)
    }

    /// Decodes the records. Their batch's checksum was verified when it
    /// was read, so an error here means a record that was stored damaged.
    pub fn decode(&self) -> Result<Vec<Record>, crate::BatchError> {
        self.records.iter().map(|(_, r)| Record::decode(r.clone()).map_err(crate::BatchError::from)).collect()
    }
}
