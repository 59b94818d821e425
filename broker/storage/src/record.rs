//! Records as the broker appends, stores and serves them.
//!
//! These are prost messages so that the storage layer can encode them without
//! a second format. Their field numbers match `brooklet.v1.Record` and
//! `brooklet.v1.Header`, so a stored batch's payload is also valid wire
//! encoding (pinned by a test in `grpc::convert`).

use bytes::Bytes;

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
    /// The payload; may be empty.
    #[prost(bytes = "bytes", tag = "4")]
    pub value: Bytes,
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
        record_size(self.key.as_deref(), &self.value, &self.headers)
    }
}

/// What a record counts against the size limit and in the byte metrics:
/// key, value, and every header's name and value. The one definition.
pub fn record_size(key: Option<&[u8]>, value: &[u8], headers: &[Header]) -> usize {
    key.map_or(0, <[u8]>::len)
        + value.len()
        + headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
}

/// Records of one partition with consecutive offsets.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The offset of the batch's first record.
    pub base_offset: u64,
    /// The records; record `i` has offset `base_offset + records[i].offset_delta`.
    pub records: Vec<Record>,
}

impl Batch {
    /// The offset after the batch's last record.
    pub fn next_offset(&self) -> u64 {
        self.records.last().map_or(self.base_offset, |r| self.base_offset + u64::from(r.offset_delta) + 1)
    }
}
