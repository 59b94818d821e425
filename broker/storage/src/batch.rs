//! The stored batch: one sled value per appended batch.
//!
//! ```text
//! offset size field
//!      0    1 format version (1)
//!      1    8 base offset            (big-endian, as all header integers)
//!      9    4 offset count: the records when written; compaction removes
//!             records but keeps it, so the batch still spans its offsets
//!     13    8 first timestamp (ms)
//!     21    8 max timestamp (ms)
//!     29    8 producer id (0: not from an idempotent producer)
//!     37    8 the producer's sequence number of the first record
//!     45    4 payload length
//!     49    4 CRC32C of the payload
//!     53    … payload: the records, each a length-delimited protobuf message
//! ```
//!
//! The payload is encoded before the partition's append lock is taken; only
//! the base offset is written under it.

use bytes::{Buf, Bytes};
use prost::Message;

use crate::record::Record;

const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 53;

/// An idempotent producer's identity on a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSeq {
    /// Producer id (from 1).
    pub producer_id: u64,
    /// Sequence number of the batch's first record; the others follow.
    pub base_sequence: u64,
}

/// Why a stored value is not a valid batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The value is shorter than its header says.
    #[error("batch is truncated: {len} bytes, header needs {needed}")]
    Truncated {
        /// Stored length.
        len: usize,
        /// Length the header announces.
        needed: usize,
    },
    /// Unknown format version.
    #[error("batch format version {0} is not supported")]
    Version(u8),
    /// The payload does not match its checksum.
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC in the header.
        stored: u32,
        /// CRC of the payload as read.
        computed: u32,
    },
    /// The header's offsets run past the largest offset.
    #[error("batch header spans past the largest offset: base offset {base_offset}, {record_count} offsets")]
    Span {
        /// Base offset in the header.
        base_offset: u64,
        /// Offset count in the header.
        record_count: u32,
    },
    /// The payload's records do not decode.
    #[error("batch records do not decode")]
    Decode(#[from] prost::DecodeError),
}

/// A batch encoded for storage, waiting for its base offset.
#[derive(Debug)]
pub struct EncodedBatch {
    buf: Vec<u8>,
    record_count: u32,
}

impl EncodedBatch {
    /// Encodes `records` (whose `offset_delta`s must be 0, 1, 2, …).
    pub fn encode(records: &[Record], producer: Option<ProducerSeq>) -> EncodedBatch {
        EncodedBatch::encode_span(records, u32::try_from(records.len()).unwrap_or(u32::MAX), producer)
    }

    /// Encodes what compaction kept of a batch that spans `offset_count`
    /// offsets; the records keep their `offset_delta`s.
    pub fn encode_span(records: &[Record], offset_count: u32, producer: Option<ProducerSeq>) -> EncodedBatch {
        let payload_len: usize =
            records.iter().map(Message::encoded_len).map(|l| l + prost::length_delimiter_len(l)).sum();
        let mut buf = Vec::with_capacity(HEADER_LEN + payload_len);
        buf.resize(HEADER_LEN, 0);
        for record in records {
            // Encoding into a Vec with enough capacity cannot fail.
            record.encode_length_delimited(&mut buf).expect("Vec<u8> grows to fit");
        }
        let first_ts = records.first().map_or(0, |r| r.timestamp_ms);
        let max_ts = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
        let crc = crc32c::crc32c(&buf[HEADER_LEN..]);
        let record_count = offset_count;
        buf[0] = VERSION;
        buf[9..13].copy_from_slice(&record_count.to_be_bytes());
        buf[13..21].copy_from_slice(&first_ts.to_be_bytes());
        buf[21..29].copy_from_slice(&max_ts.to_be_bytes());
        if let Some(p) = producer {
            buf[29..37].copy_from_slice(&p.producer_id.to_be_bytes());
            buf[37..45].copy_from_slice(&p.base_sequence.to_be_bytes());
        }
        buf[45..49].copy_from_slice(&(payload_len as u32).to_be_bytes());
        buf[49..53].copy_from_slice(&crc.to_be_bytes());
        EncodedBatch { buf, record_count }
    }

    /// Number of offsets the batch spans.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// The largest record timestamp.
    pub fn max_timestamp_ms(&self) -> i64 {
        i64::from_be_bytes(self.buf[21..29].try_into().expect("eight header bytes"))
    }

    /// Stored size in bytes.
    pub fn stored_len(&self) -> usize {
        self.buf.len()
    }

    /// Sets the base offset and hands over the stored value.
    pub fn into_value(mut self, base_offset: u64) -> Vec<u8> {
        self.buf[1..9].copy_from_slice(&base_offset.to_be_bytes());
        self.buf
    }
}

/// Splits a partition's records into stored batches of at most
/// [`TARGET_STORED_BATCH_BYTES`](crate::TARGET_STORED_BATCH_BYTES) (a larger record alone), numbering each
/// part's records from 0 (and its producer sequence on from the part before).
pub fn encode_parts(mut records: Vec<Record>, producer: Option<ProducerSeq>) -> Vec<EncodedBatch> {
    let seq =
        |start: usize| producer.map(|p| ProducerSeq { base_sequence: p.base_sequence + start as u64, ..p });
    let limit = crate::TARGET_STORED_BATCH_BYTES - HEADER_LEN;
    let mut parts = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for i in 0..records.len() {
        let len = records[i].encoded_len() + prost::length_delimiter_len(records[i].encoded_len());
        if i > start && bytes + len > limit {
            parts.push(EncodedBatch::encode(&records[start..i], seq(start)));
            start = i;
            bytes = 0;
        }
        records[i].offset_delta = (i - start) as u32;
        bytes += len;
    }
    parts.push(EncodedBatch::encode(&records[start..], seq(start)));
    parts
}

/// The header of a stored batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
    /// Timestamp of the first record.
    pub first_timestamp_ms: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp_ms: i64,
    /// The idempotent producer that wrote it, if any.
    pub producer: Option<ProducerSeq>,
    /// Payload length.
    pub payload_len: u32,
    /// CRC32C of the payload.
    pub crc: u32,
}

impl BatchHeader {
    /// The offset after the batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// Reads a stored value's header, checking only its length and version.
pub(crate) fn read_header(value: &[u8]) -> Result<BatchHeader, BatchError> {
    if value.len() < HEADER_LEN {
        return Err(BatchError::Truncated { len: value.len(), needed: HEADER_LEN });
    }
    let mut h = &value[..HEADER_LEN];
    let version = h.get_u8();
    if version != VERSION {
        return Err(BatchError::Version(version));
    }
    let header = BatchHeader {
        base_offset: h.get_u64(),
        record_count: h.get_u32(),
        first_timestamp_ms: h.get_i64(),
        max_timestamp_ms: h.get_i64(),
        producer: match (h.get_u64(), h.get_u64()) {
            (0, _) => None,
            (producer_id, base_sequence) => Some(ProducerSeq { producer_id, base_sequence }),
        },
        payload_len: h.get_u32(),
        crc: h.get_u32(),
    };
    if header.base_offset.checked_add(u64::from(header.record_count)).is_none() {
        return Err(BatchError::Span { base_offset: header.base_offset, record_count: header.record_count });
    }
    let needed = HEADER_LEN + header.payload_len as usize;
    if value.len() != needed {
        return Err(BatchError::Truncated { len: value.len(), needed });
    }
    Ok(header)
}

/// A stored value's header and its payload, once the checksum matches.
fn verified(value: Bytes) -> Result<(BatchHeader, Bytes), BatchError> {
    let header = read_header(&value)?;
    let payload = value.slice(HEADER_LEN..);
    let computed = crc32c::crc32c(&payload);
    if computed != header.crc {
        return Err(BatchError::Checksum { stored: header.crc, computed });
    }
    Ok((header, payload))
}

/// Room for the records the header counts, but no more than the payload
/// can hold (each record takes at least its one-byte length): the count of
/// a damaged header must not size an allocation.
fn capacity(header: &BatchHeader, payload: &Bytes) -> usize {
    (header.record_count as usize).min(payload.len())
}

/// Verifies a stored value's checksum and decodes its records. Keys, values
/// and header values are slices of `value`, not copies.
pub fn decode(value: Bytes) -> Result<(BatchHeader, Vec<Record>), BatchError> {
    let (header, mut payload) = verified(value)?;
    let mut records = Vec::with_capacity(capacity(&header, &payload));
    while payload.has_remaining() {
        records.push(Record::decode_length_delimited(&mut payload)?);
    }
    Ok((header, records))
}

/// Only the offset delta of a stored record: decoding into it skips every
/// other field without reading it.
#[derive(Clone, PartialEq, Message)]
struct OffsetDelta {
    #[prost(uint32, tag = "1")]
    offset_delta: u32,
}

/// Verifies a stored value's checksum and splits its payload into its
/// records' encodings (each a `Record` message without its length prefix,
/// a slice of `value`), with each record's offset delta. Nothing else of a
/// record is decoded.
pub(crate) fn split(value: Bytes) -> Result<(BatchHeader, Vec<(u32, Bytes)>), BatchError> {
    let (header, mut payload) = verified(value)?;
    let mut records = Vec::with_capacity(capacity(&header, &payload));
    while payload.has_remaining() {
        let len = prost::decode_length_delimiter(&mut payload)?;
        if len > payload.remaining() {
            return Err(BatchError::Truncated { len: payload.remaining(), needed: len });
        }
        let record = payload.split_to(len);
        let delta = OffsetDelta::decode(record.clone())?.offset_delta;
        records.push((delta, record));
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Header;

    fn record(delta: u32, ts: i64, value: &'static [u8]) -> Record {
        Record {
            offset_delta: delta,
            timestamp_ms: ts,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(value)),
            headers: vec![Header { name: "h".into(), value: Bytes::from_static(b"v") }],
        }
    }

    #[test]
    fn round_trip() {
        let records = vec![record(0, 20, b"a"), record(1, 10, b""), record(2, 30, b"ccc")];
        let producer = ProducerSeq { producer_id: 9, base_sequence: 17 };
        let value = EncodedBatch::encode(&records, Some(producer)).into_value(42);
        let (header, decoded) = decode(Bytes::from(value)).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.producer, Some(producer));
        assert_eq!(header.record_count, 3);
        assert_eq!(header.first_timestamp_ms, 20);
        assert_eq!(header.max_timestamp_ms, 30);
        assert_eq!(header.next_offset(), 45);
        assert_eq!(decoded, records);
    }

    #[test]
    fn split_records_are_their_encodings_with_their_offsets() {
        let null = Record { offset_delta: 3, value: None, ..record(3, 10, b"") };
        let records = vec![record(0, 20, b"a"), record(1, 10, b""), null, record(5, 30, b"ccc")];
        let value = Bytes::from(EncodedBatch::encode_span(&records, 6, None).into_value(42));
        let (header, split) = split(value.clone()).unwrap();
        assert_eq!(header, decode(value).unwrap().0);
        let deltas: Vec<u32> = split.iter().map(|(d, _)| *d).collect();
        assert_eq!(deltas, [0, 1, 3, 5]);
        for ((_, encoded), original) in split.iter().zip(&records) {
            assert_eq!(Record::decode(encoded.clone()).unwrap(), *original);
        }
        assert_eq!(Record::decode(split[1].1.clone()).unwrap().value, Some(Bytes::new()), "empty, not null");
        assert_eq!(Record::decode(split[2].1.clone()).unwrap().value, None, "null, not empty");
    }

    #[test]
    fn corruption_is_detected() {
        let mut value = EncodedBatch::encode(&[record(0, 1, b"payload")], None).into_value(0);
        let last = value.len() - 1;
        value[last] ^= 0xff;
        assert!(matches!(decode(Bytes::from(value.clone())), Err(BatchError::Checksum { .. })));
        value.truncate(last);
        assert!(matches!(decode(Bytes::from(value)), Err(BatchError::Truncated { .. })));
        assert!(matches!(decode(Bytes::from_static(&[1, 2, 3])), Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn large_batches_split_and_renumber() {
        let value = Bytes::from(vec![7u8; 700 << 10]);
        let records: Vec<Record> =
            (0..7).map(|_| Record { value: Some(value.clone()), ..Record::default() }).collect();
        let parts = encode_parts(records, None);
        assert_eq!(parts.len(), 7, "a record over the target size is a part of its own");
        assert!(parts.iter().all(|p| p.stored_len() <= crate::MAX_STORED_BATCH_BYTES));
        assert_eq!(parts.iter().map(|p| p.record_count()).sum::<u32>(), 7);
    }

    #[test]
    fn batches_split_near_the_target_size_at_record_boundaries() {
        let value = Bytes::from(vec![7u8; 1000]);
        let records: Vec<Record> =
            (0..300).map(|_| Record { value: Some(value.clone()), ..Record::default() }).collect();
        let producer = ProducerSeq { producer_id: 9, base_sequence: 100 };
        let parts = encode_parts(records, Some(producer));
        assert!(parts.len() >= 300_000 / crate::TARGET_STORED_BATCH_BYTES, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.stored_len() <= crate::TARGET_STORED_BATCH_BYTES));
        let mut next_sequence = 100;
        for part in parts {
            let (header, _) = decode(part.into_value(0).into()).expect("a valid batch");
            assert_eq!(header.producer.map(|p| p.base_sequence), Some(next_sequence));
            next_sequence += u64::from(header.record_count);
        }
        assert_eq!(next_sequence, 400);
    }
}
