//! The records an application handles: [`ProducerRecord`] going out,
//! [`ConsumerRecord`] coming in, [`RecordMetadata`] acknowledging, and the
//! [`Header`] they share. The conversions to and from the wire types live here
//! too, crate-private, so no proto type leaks into the public API.

use std::sync::Arc;

use brooklet_proto::v1;
use bytes::Bytes;

/// One record header. Names may repeat; order is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value.
    pub value: Bytes,
}

impl Header {
    /// A header named `name` holding `value`.
    pub fn new(name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self { name: name.into(), value: value.into() }
    }

    pub(crate) fn from_proto(header: v1::Header) -> Self {
        Self { name: header.name, value: header.value }
    }

    pub(crate) fn into_proto(self) -> v1::Header {
        v1::Header { name: self.name, value: self.value }
    }
}

/// A record to send with [`Producer::send`](crate::Producer::send).
///
/// ```
/// use brooklet_client::ProducerRecord;
///
/// let record = ProducerRecord::new("shipped")
///     .key("order-42")
///     .header("trace-id", "abc123");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Bytes,
    pub(crate) headers: Vec<Header>,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) partition: Option<u32>,
}

/// Bytes a record costs beyond its key, value and headers, in the producer's
/// accounting: roughly its protobuf framing and the producer's bookkeeping.
/// Counting it keeps a flood of empty records from escaping the buffer limit.
const RECORD_OVERHEAD: usize = 32;
/// Bytes a header costs beyond its name and value, likewise.
const HEADER_OVERHEAD: usize = 8;

impl ProducerRecord {
    /// A record holding `value`, without key or headers, for the partition
    /// the producer picks and stamped with the broker's append time.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self { key: None, value: value.into(), headers: Vec::new(), timestamp_ms: None, partition: None }
    }

    /// Sets the key. Without an explicit [`partition`](Self::partition), the
    /// key picks the partition, so records with the same key stay in order.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch. Left unset,
    /// the broker stamps the record with its append time.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Sends the record to this partition, whatever its key.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The record's size in the producer's accounting of batches and buffer.
    pub(crate) fn size(&self) -> usize {
        let headers: usize =
            self.headers.iter().map(|h| h.name.len() + h.value.len() + HEADER_OVERHEAD).sum();
        RECORD_OVERHEAD + self.key.as_ref().map_or(0, Bytes::len) + self.value.len() + headers
    }

    pub(crate) fn into_proto(self, partition: u32) -> v1::ProduceRecord {
        v1::ProduceRecord {
            partition: Some(partition),
            key: self.key,
            value: self.value,
            headers: self.headers.into_iter().map(Header::into_proto).collect(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// How safe an acknowledged record is: what a producer asks for with
/// [`ProducerBuilder::acks`](crate::ProducerBuilder::acks) and what each
/// acknowledgement reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Fire and forget: a record's delivery resolves as soon as its batch is
    /// handed to the connection, without an offset, before the broker has
    /// answered. Nothing is promised: a record the broker refuses, or one
    /// lost with the connection or a broker crash, is lost without an error
    /// to its sender (the producer logs a warning). The broker appends as
    /// for [`Written`](Durability::Written).
    None,
    /// In the broker's storage engine and readable by consumers, but not yet
    /// flushed to disk: a broker crash can lose it.
    Written,
    /// Flushed and fdatasync'd before the acknowledgement.
    Durable,
}

impl Durability {
    /// Reads the broker's answer, taking anything unknown as the weaker
    /// promise.
    pub(crate) fn from_proto(value: i32) -> Self {
        if value == v1::Durability::Durable as i32 { Durability::Durable } else { Durability::Written }
    }

    pub(crate) fn into_proto(self) -> i32 {
        match self {
            Durability::None => v1::Durability::None as i32,
            Durability::Written => v1::Durability::Written as i32,
            Durability::Durable => v1::Durability::Durable as i32,
        }
    }

    /// Its name on the command line and in reports: `none`, `written` or
    /// `durable`.
    pub fn name(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Written => "written",
            Durability::Durable => "durable",
        }
    }
}

/// Where an acknowledged record was written, or, with
/// [`Durability::None`], that it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// The record's topic (shared by the records of a batch).
    pub topic: Arc<str>,
    /// The partition it was appended to.
    pub partition: u32,
    /// Its offset in that partition; `None` when the producer did not wait
    /// for the broker's answer ([`Durability::None`]).
    pub offset: Option<u64>,
    /// The timestamp the producer set, or `None` when the broker stamped its
    /// append time (which the acknowledgement does not carry).
    pub timestamp_ms: Option<i64>,
    /// What the acknowledgement promises.
    pub durability: Durability,
}

/// A record read by a [`Consumer`](crate::Consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerRecord {
    /// The record's topic (shared by the records of a fetch).
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch: the producer's timestamp, or the
    /// broker's append time when the producer set none.
    pub timestamp_ms: i64,
    /// The key, if the record has one.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// The headers, in the order they were sent.
    pub headers: Vec<Header>,
}

/// Flattens fetched batches into records, dropping any before `from` (the
/// broker starts at the requested offset; this guards against one that
/// returns a whole batch around it).
pub(crate) fn records_from_batches(
    topic: &str,
    partition: u32,
    from: u64,
    batches: Vec<v1::RecordBatch>,
) -> Vec<ConsumerRecord> {
    let mut records = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
    let topic: Arc<str> = topic.into();
    for batch in batches {
        for record in batch.records {
            let offset = batch.base_offset + u64::from(record.offset_delta);
            if offset < from {
                continue;
            }
            records.push(ConsumerRecord {
                topic: Arc::clone(&topic),
                partition,
                offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key,
                value: record.value,
                headers: record.headers.into_iter().map(Header::from_proto).collect(),
            });
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let record =
            ProducerRecord::new("v").key("k").header("a", "1").header("a", "2").timestamp_ms(7).partition(3);
        let proto = record.into_proto(3);
        assert_eq!(proto.partition, Some(3));
        assert_eq!(proto.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(proto.value, Bytes::from("v"));
        assert_eq!(proto.timestamp_ms, Some(7));
        let headers: Vec<_> = proto.headers.iter().map(|h| (h.name.as_str(), &h.value[..])).collect();
        assert_eq!(headers, [("a", &b"1"[..]), ("a", &b"2"[..])]);
    }

    #[test]
    fn size_counts_key_value_headers_and_overhead() {
        assert_eq!(ProducerRecord::new("").size(), RECORD_OVERHEAD);
        let record = ProducerRecord::new(vec![0u8; 100]).key("key").header("hn", "hv!");
        assert_eq!(record.size(), RECORD_OVERHEAD + 100 + 3 + 2 + 3 + HEADER_OVERHEAD);
    }

    #[test]
    fn batches_flatten_to_offsets_from_the_requested_one() {
        let record = |delta, value: &'static str| v1::Record {
            offset_delta: delta,
            timestamp_ms: 1000 + i64::from(delta),
            key: None,
            value: Bytes::from(value),
            headers: vec![v1::Header { name: "h".into(), value: Bytes::from("x") }],
        };
        let batches = vec![
            v1::RecordBatch {
                partition: 2,
                base_offset: 10,
                records: vec![record(0, "a"), record(1, "b"), record(2, "c")],
            },
            v1::RecordBatch { partition: 2, base_offset: 13, records: vec![record(0, "d")] },
        ];
        let records = records_from_batches("t", 2, 11, batches);
        let got: Vec<_> = records.iter().map(|r| (r.offset, &r.value[..])).collect();
        assert_eq!(got, [(11, &b"b"[..]), (12, &b"c"[..]), (13, &b"d"[..])]);
        assert_eq!(&*records[0].topic, "t");
        assert_eq!(records[0].partition, 2);
        assert_eq!(records[0].timestamp_ms, 1001);
        assert_eq!(records[0].headers, [Header::new("h", "x")]);
    }

    #[test]
    fn unknown_durability_is_the_weaker_promise() {
        assert_eq!(Durability::from_proto(v1::Durability::Durable as i32), Durability::Durable);
        assert_eq!(Durability::from_proto(v1::Durability::Written as i32), Durability::Written);
        assert_eq!(Durability::from_proto(0), Durability::Written);
        assert_eq!(Durability::from_proto(42), Durability::Written);
    }
}
