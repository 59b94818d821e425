//! RecordBatch v2 ⇄ the core's records, read and written here field by
//! field: Kafka records may repeat a header name, in order, which a map of
//! headers (as `kafka-protocol`'s records module keeps them) would collapse.
//! Each batch's CRC32C is checked on produce and written on fetch; produced
//! batches may be compressed, fetched ones never are.

use brooklet_core::{Header, MAX_HEADERS, NewRecord, StoredRecords};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;

use crate::compression::{self, Codec, DecompressError};

/// Bytes of a v2 batch header before its first record.
const BATCH_HEADER: usize = 61;
/// The smallest encoding of one record: length, attributes, timestamp
/// delta, offset delta, key length, value length, header count.
const MIN_RECORD: usize = 7;
/// Where a batch header's fields start.
const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const COUNT_AT: usize = 57;
/// Attribute bits besides the codec.
const LOG_APPEND_TIME: i16 = 1 << 3;
const TRANSACTIONAL: i16 = 1 << 4;
const CONTROL: i16 = 1 << 5;

/// Why a produced batch was refused, with the Kafka error code to answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct BatchError {
    pub(crate) error: ResponseError,
    pub(crate) message: String,
}

fn refuse(error: ResponseError, message: impl Into<String>) -> BatchError {
    BatchError { error, message: message.into() }
}

/// An idempotent producer's claim on a produced batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProducerClaim {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
}

/// How many bytes the compressed records of one produce request may
/// decompress to, over all its partitions: a few compressed bytes may claim
/// gigabytes, and one request may carry thousands of partitions.
#[derive(Debug)]
pub(crate) struct DecompressBudget {
    limit: usize,
    left: usize,
}

impl DecompressBudget {
    pub(crate) fn new(limit: usize) -> DecompressBudget {
        DecompressBudget { limit, left: limit }
    }
}

/// The records of a produce request's partition, for `partition`, with the
/// producer's claim if the batch is idempotent. Batches are v2, compressed
/// or not; compressed records are charged to `budget`. An idempotent
/// producer sends one batch.
pub(crate) fn decode_produce(
    mut rest: Bytes,
    partition: u32,
    budget: &mut DecompressBudget,
) -> Result<(Vec<NewRecord>, Option<ProducerClaim>), BatchError> {
    let (mut batches, mut claim) = (0, None);
    let mut out = Vec::new();
    while !rest.is_empty() {
        let header = check_header(&rest)?;
        let batch = rest.split_to(header.total);
        let crc = u32::from_be_bytes(be(&batch, CRC_AT));
        if crc32c::crc32c(&batch[ATTRIBUTES_AT..]) != crc {
            return Err(refuse(ResponseError::CorruptMessage, "a record batch fails its CRC32C check"));
        }
        if let Some(c) = header.claim {
            claim = Some(c);
        }
        batches += 1;
        if claim.is_some() && batches > 1 {
            return Err(refuse(
                ResponseError::InvalidRecord,
                "an idempotent producer sends one batch per partition",
            ));
        }
        let records = match header.codec {
            Codec::None => batch.slice(BATCH_HEADER..),
            codec => {
                let records = compression::decompress(codec, &batch[BATCH_HEADER..], budget.left).map_err(
                    |e| match e {
                        DecompressError::TooLarge { codec, .. } => refuse(
                            ResponseError::MessageTooLarge,
                            format!(
                                "{codec:?} records decompress past {} bytes, the request size limit, for \
                                 a produce request's compressed records",
                                budget.limit
                            ),
                        ),
                        DecompressError::Corrupt { .. } => {
                            refuse(ResponseError::CorruptMessage, e.to_string())
                        }
                    },
                )?;
                budget.left -= records.len();
                Bytes::from(records)
            }
        };
        let count = header.count;
        if count.saturating_mul(MIN_RECORD) > records.len() {
            return Err(refuse(
                ResponseError::CorruptMessage,
                format!("a record batch cannot hold {count} records in {} bytes", records.len()),
            ));
        }
        crate::walk::check_records(&records, count).map_err(|e| {
            refuse(ResponseError::CorruptMessage, format!("a record batch is malformed: {e}"))
        })?;
        out.reserve(count);
        let mut reader = Reader { bytes: &records, at: 0, end: records.len() };
        for _ in 0..count {
            out.push(reader.record(header.base_timestamp, header.log_append_time, partition)?);
        }
        if reader.at != records.len() {
            return Err(refuse(
                ResponseError::CorruptMessage,
                format!("a record batch has {} bytes after its {count} records", records.len() - reader.at),
            ));
        }
    }
    if out.is_empty() {
        return Err(refuse(ResponseError::InvalidRecord, "the request carries no record"));
    }
    Ok((out, claim))
}

/// What a batch header says, checked.
struct BatchHeader {
    /// The batch's bytes, header included.
    total: usize,
    codec: Codec,
    log_append_time: bool,
    base_timestamp: i64,
    count: usize,
    claim: Option<ProducerClaim>,
}

fn be<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Checks a batch's header before its records are read: format v2, a length
/// the bytes hold, a known codec, not transactional, not a control batch, a
/// positive record count that its last offset delta agrees with; an
/// idempotent batch has a non-negative base sequence.
fn check_header(rest: &[u8]) -> Result<BatchHeader, BatchError> {
    if rest.len() < BATCH_HEADER {
        return Err(refuse(ResponseError::CorruptMessage, "a record batch is shorter than its header"));
    }
    let magic = rest[MAGIC_AT];
    if magic != 2 {
        return Err(refuse(
            ResponseError::UnsupportedForMessageFormat,
            format!("record batch format v{magic} is not supported: only v2"),
        ));
    }
    let length = i32::from_be_bytes(be(rest, LENGTH_AT));
    let total = usize::try_from(length).ok().and_then(|l| l.checked_add(12)).filter(|t| *t <= rest.len());
    let Some(total) = total.filter(|t| *t >= BATCH_HEADER) else {
        return Err(refuse(
            ResponseError::CorruptMessage,
            format!("a record batch's length {length} is wrong"),
        ));
    };
    let attributes = i16::from_be_bytes(be(rest, ATTRIBUTES_AT));
    let Some(codec) = Codec::from_attributes(attributes) else {
        return Err(refuse(
            ResponseError::UnsupportedCompressionType,
            format!(
                "compression type {} is unknown: gzip (1), snappy (2), lz4 (3) or zstd (4)",
                attributes & 7
            ),
        ));
    };
    if attributes & TRANSACTIONAL != 0 {
        return Err(refuse(ResponseError::InvalidRecord, "transactional producers are not supported yet"));
    }
    if attributes & CONTROL != 0 {
        return Err(refuse(ResponseError::InvalidRecord, "control batches cannot be produced"));
    }
    let producer_id = i64::from_be_bytes(be(rest, PRODUCER_ID_AT));
    let claim = if producer_id >= 0 {
        let base_sequence = i32::from_be_bytes(be(rest, BASE_SEQUENCE_AT));
        if base_sequence < 0 {
            return Err(refuse(
                ResponseError::InvalidRecord,
                format!("an idempotent batch's base sequence {base_sequence} is negative"),
            ));
        }
        let producer_epoch = i16::from_be_bytes(be(rest, PRODUCER_EPOCH_AT));
        Some(ProducerClaim { producer_id, producer_epoch, base_sequence })
    } else {
        None
    };
    // Kafka's rule: a batch holds records, and its offset range (the last
    // offset delta) spans exactly its record count.
    let count = i32::from_be_bytes(be(rest, COUNT_AT));
    if count <= 0 {
        return Err(refuse(ResponseError::InvalidRecord, format!("a record batch counts {count} records")));
    }
    let last_offset_delta = i32::from_be_bytes(be(rest, LAST_OFFSET_DELTA_AT));
    if i64::from(last_offset_delta) + 1 != i64::from(count) {
        return Err(refuse(
            ResponseError::InvalidRecord,
            format!(
                "a record batch's last offset delta {last_offset_delta} does not match its {count} records"
            ),
        ));
    }
    let count = count as usize;
    Ok(BatchHeader {
        total,
        codec,
        log_append_time: attributes & LOG_APPEND_TIME != 0,
        base_timestamp: i64::from_be_bytes(be(rest, BASE_TIMESTAMP_AT)),
        count,
        claim,
    })
}

/// Reads records from a batch's (decompressed) records; keys, values and
/// header values share its bytes. No read passes `end`: the batch's end,
/// or within a record, the record's.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
    end: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<i64, String> {
        let mut z = 0u64;
        for i in 0..10 {
            let &b = self.bytes[..self.end].get(self.at).ok_or("a varint is cut short")?;
            self.at += 1;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    fn take(&mut self, len: usize) -> Result<Bytes, String> {
        let until =
            self.at.checked_add(len).filter(|u| *u <= self.end).ok_or("a field runs past its record")?;
        let out = self.bytes.slice(self.at..until);
        self.at = until;
        Ok(out)
    }

    /// Bytes with a varint length; a negative length is null.
    fn nullable(&mut self) -> Result<Option<Bytes>, String> {
        match usize::try_from(self.varint()?) {
            Ok(len) => self.take(len).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The next record; a record that breaks the format is corrupt, one
    /// with more headers than a record may have is invalid.
    fn record(
        &mut self,
        base_timestamp: i64,
        log_append_time: bool,
        partition: u32,
    ) -> Result<NewRecord, BatchError> {
        let corrupt =
            |e: String| refuse(ResponseError::CorruptMessage, format!("a record is malformed: {e}"));
        let len = self.varint().map_err(corrupt)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.at.checked_add(l))
            .filter(|e| *e <= self.end)
            .ok_or_else(|| corrupt(format!("a record length of {len} runs past its batch")))?;
        let batch_end = std::mem::replace(&mut self.end, end);
        let record = self.record_body(base_timestamp, log_append_time, partition);
        self.end = batch_end;
        let record = record?;
        if self.at != end {
            return Err(corrupt(format!("{} bytes follow a record's headers", end - self.at)));
        }
        Ok(record)
    }

    fn record_body(
        &mut self,
        base_timestamp: i64,
        log_append_time: bool,
        partition: u32,
    ) -> Result<NewRecord, BatchError> {
        let corrupt =
            |e: String| refuse(ResponseError::CorruptMessage, format!("a record is malformed: {e}"));
        self.take(1).map_err(corrupt)?; // attributes: unused in v2
        let delta = self.varint().map_err(corrupt)?;
        let timestamp =
            base_timestamp.checked_add(delta).ok_or_else(|| corrupt("a timestamp overflows".into()))?;
        self.varint().map_err(corrupt)?; // offset delta: the broker assigns offsets
        let key = self.nullable().map_err(corrupt)?;
        let value = self.nullable().map_err(corrupt)?;
        let count = self.varint().map_err(corrupt)?;
        // Each header takes at least two bytes (two lengths).
        let count =
            usize::try_from(count).ok().filter(|c| c.saturating_mul(2) <= self.end - self.at).ok_or_else(
                || corrupt(format!("a record counts {count} headers in {} bytes", self.end - self.at)),
            )?;
        if count > MAX_HEADERS {
            return Err(refuse(
                ResponseError::InvalidRecord,
                format!("a record has {count} headers, more than the maximum of {MAX_HEADERS}"),
            ));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name_len = self.varint().map_err(corrupt)?;
            let name_len = usize::try_from(name_len)
                .map_err(|_| corrupt(format!("a header name length of {name_len}")))?;
            let name = self.take(name_len).map_err(corrupt)?;
            let name = std::str::from_utf8(&name)
                .map_err(|_| corrupt("a header name is not UTF-8".into()))?
                .to_owned();
            // A null header value is kept as an empty one.
            let value = self.nullable().map_err(corrupt)?.unwrap_or_default();
            headers.push(Header { name, value });
        }
        let timestamp_ms = (!log_append_time && timestamp >= 0).then_some(timestamp);
        Ok(NewRecord { partition: Some(partition), timestamp_ms, key, value, headers })
    }
}

/// The core's stored records as uncompressed RecordBatch v2 batches, at
/// their offsets: one batch per stored batch, as many as fit in
/// `max_bytes`; with `at_least_one`, the first batch even if it alone is
/// larger. Each record is written straight from its stored encoding,
/// without decoding it into owned fields.
pub(crate) fn encode_fetched(
    batches: &[StoredRecords],
    max_bytes: usize,
    at_least_one: bool,
    out: &mut BytesMut,
) -> Result<(), String> {
    // A record's Kafka encoding is about the size of its stored one.
    let estimate: usize =
        batches.iter().map(|b| BATCH_HEADER + b.encoded_bytes() as usize + 4 * b.len()).sum();
    out.reserve(estimate);
    let start = out.len();
    let mut headers = Vec::new();
    for stored in batches {
        let before = out.len();
        encode_batch(stored.base_offset(), stored.encodings(), &mut headers, out)?;
        if out.len() - start > max_bytes && !(at_least_one && before == start) {
            out.truncate(before);
            break;
        }
    }
    Ok(())
}

/// A stored record's fields, borrowed from its encoding (the core's
/// `Record` message: 1 offset delta, 2 timestamp, 3 key, 4 value, 5 each
/// header with 1 its name and 2 its value).
struct StoredFields<'a> {
    offset_delta: u32,
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// Reads a stored record's fields as a protobuf decoder does (the last of
/// a repeated field wins, unknown fields are skipped); its headers go to
/// `headers`, names and values.
fn stored_fields<'a>(
    mut b: &'a [u8],
    headers: &mut Vec<(&'a [u8], &'a [u8])>,
) -> Result<StoredFields<'a>, String> {
    let mut fields = StoredFields { offset_delta: 0, timestamp_ms: 0, key: None, value: None };
    headers.clear();
    while !b.is_empty() {
        let (field, wire) = tag(&mut b)?;
        match (field, wire) {
            (1, 0) => fields.offset_delta = uvarint(&mut b)? as u32,
            (2, 0) => fields.timestamp_ms = uvarint(&mut b)? as i64,
            (3, 2) => fields.key = Some(delimited(&mut b)?),
            (4, 2) => fields.value = Some(delimited(&mut b)?),
            (5, 2) => {
                let mut h = delimited(&mut b)?;
                let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
                while !h.is_empty() {
                    match tag(&mut h)? {
                        (1, 2) => name = delimited(&mut h)?,
                        (2, 2) => value = delimited(&mut h)?,
                        (1 | 2, wire) => return Err(format!("a header field has wire type {wire}")),
                        (_, wire) => skip(&mut h, wire)?,
                    }
                }
                headers.push((name, value));
            }
            (1..=5, wire) => return Err(format!("field {field} has wire type {wire}")),
            (_, wire) => skip(&mut b, wire)?,
        }
    }
    Ok(fields)
}

fn uvarint(b: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = b.split_first() else { return Err("a varint is cut short".into()) };
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("a varint is longer than 10 bytes".into())
}

fn tag(b: &mut &[u8]) -> Result<(u64, u64), String> {
    let key = uvarint(b)?;
    Ok((key >> 3, key & 7))
}

fn delimited<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = uvarint(b)?;
    let len = usize::try_from(len).ok().filter(|l| *l <= b.len()).ok_or("a field runs past its record")?;
    let (field, rest) = b.split_at(len);
    *b = rest;
    Ok(field)
}

fn skip(b: &mut &[u8], wire: u64) -> Result<(), String> {
    let len = match wire {
        0 => return uvarint(b).map(drop),
        1 => 8,
        2 => return delimited(b).map(drop),
        5 => 4,
        _ => return Err(format!("wire type {wire} cannot be skipped")),
    };
    *b = b.get(len..).ok_or("a field runs past its record")?;
    Ok(())
}

/// Appends one batch of stored `records` (their encodings), whose offsets
/// are `base_offset` plus their offset deltas; nothing for no records.
/// `headers` is scratch space, reused from record to record.
fn encode_batch<'a>(
    base_offset: u64,
    records: impl IntoIterator<Item = &'a Bytes>,
    headers: &mut Vec<(&'a [u8], &'a [u8])>,
    out: &mut BytesMut,
) -> Result<(), String> {
    let mut records = records.into_iter().peekable();
    let Some(first) = records.peek() else { return Ok(()) };
    let first = stored_fields(first, headers)?;
    let (first_delta, base_timestamp) = (first.offset_delta, first.timestamp_ms);
    let start = out.len();
    out.put_bytes(0, BATCH_HEADER);
    let (mut last_delta, mut max_timestamp, mut count) = (0, base_timestamp, 0i32);
    for encoding in records {
        let r = stored_fields(encoding, headers).map_err(|e| format!("a stored record is malformed: {e}"))?;
        let delta = r
            .offset_delta
            .checked_sub(first_delta)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or_else(|| format!("stored records out of offset order at delta {}", r.offset_delta))?;
        let timestamp_delta = r.timestamp_ms.wrapping_sub(base_timestamp);
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| {
                varint_len(name.len() as i64) + name.len() + varint_len(value.len() as i64) + value.len()
            })
            .sum();
        let body = 1
            + varint_len(timestamp_delta)
            + varint_len(i64::from(delta))
            + nullable_len(r.key)
            + nullable_len(r.value)
            + varint_len(headers.len() as i64)
            + header_bytes;
        out.reserve(varint_len(body as i64) + body);
        put_varint(out, body as i64);
        out.put_u8(0);
        put_varint(out, timestamp_delta);
        put_varint(out, i64::from(delta));
        put_nullable(out, r.key);
        put_nullable(out, r.value);
        put_varint(out, headers.len() as i64);
        for (name, value) in headers.iter() {
            put_varint(out, name.len() as i64);
            out.put_slice(name);
            put_varint(out, value.len() as i64);
            out.put_slice(value);
        }
        last_delta = delta;
        max_timestamp = max_timestamp.max(r.timestamp_ms);
        count = count.checked_add(1).ok_or("too many records for one batch")?;
    }
    let length = i32::try_from(out.len() - start - 12).map_err(|_| "a batch larger than 2 GiB".to_owned())?;
    let mut header = &mut out[start..start + BATCH_HEADER];
    header.put_i64(base_offset as i64 + i64::from(first_delta));
    header.put_i32(length);
    header.put_i32(0); // partition leader epoch
    header.put_i8(2); // magic
    header.put_u32(0); // CRC, below
    header.put_i16(0); // attributes: create time, uncompressed
    header.put_i32(last_delta);
    header.put_i64(base_timestamp);
    header.put_i64(max_timestamp);
    header.put_i64(-1); // producer id
    header.put_i16(-1); // producer epoch
    header.put_i32(-1); // base sequence
    header.put_i32(count);
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES_AT..]);
    out[start + CRC_AT..start + ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    bytes.map_or(1, |b| varint_len(b.len() as i64) + b.len())
}

fn put_nullable(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use brooklet_core::Record;
    use prost::Message;

    use super::*;

    /// `records` as one fetched batch at `base_offset`, from their stored
    /// encodings.
    fn encode_records(base_offset: u64, records: &[Record], out: &mut BytesMut) {
        let encodings: Vec<Bytes> = records.iter().map(|r| Bytes::from(r.encode_to_vec())).collect();
        encode_batch(base_offset, &encodings, &mut Vec::new(), out).unwrap();
    }

    fn header(name: &str, value: &str) -> Header {
        Header { name: name.into(), value: Bytes::copy_from_slice(value.as_bytes()) }
    }

    fn stored(offset_delta: u32, key: Option<&str>, value: Option<&str>, headers: Vec<Header>) -> Record {
        Record {
            offset_delta,
            timestamp_ms: 1_700_000_000_000 + i64::from(offset_delta),
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers,
        }
    }

    fn batch(records: &[Record]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_records(0, records, &mut out);
        out
    }

    /// `batch` with its records compressed by `codec`, its length, codec
    /// bits and CRC rewritten.
    fn compressed(batch: &[u8], codec: Compression) -> Bytes {
        let mut out = BytesMut::from(&batch[..BATCH_HEADER]);
        let records = &batch[BATCH_HEADER..];
        let put = |b: &mut BytesMut| -> anyhow::Result<()> {
            b.put_slice(records);
            Ok(())
        };
        let bits = match codec {
            Compression::Gzip => Gzip::compress(&mut out, put).map(|()| 1),
            Compression::Snappy => Snappy::compress(&mut out, put).map(|()| 2),
            Compression::Lz4 => Lz4::compress(&mut out, put).map(|()| 3),
            Compression::Zstd => Zstd::compress(&mut out, put).map(|()| 4),
            Compression::None => unreachable!("only codecs"),
        }
        .unwrap();
        let length = (out.len() - 12) as i32;
        out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        out[ATTRIBUTES_AT + 1] |= bits;
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    const CODECS: [Compression; 4] =
        [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    #[test]
    fn batches_of_every_codec_from_kafka_protocols_encoder_are_read() {
        let records: Vec<KafkaRecord> = (0..50)
            .map(|i| KafkaRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: 1_000 + i,
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value {i} ").repeat(20))),
                headers: IndexMap::from([
                    (StrBytes::from_static_str("h"), Some(Bytes::from(format!("{i}")))),
                    (StrBytes::from_static_str("n"), None),
                ]),
            })
            .collect();
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let mut out = BytesMut::new();
            RecordBatchEncoder::encode(&mut out, &records, &RecordEncodeOptions { version: 2, compression })
                .unwrap();
            let (decoded, claim) =
                decode_produce(out.freeze(), 3, &mut DecompressBudget::new(1 << 20)).unwrap();
            assert_eq!(claim, None);
            assert_eq!(decoded.len(), 50, "{compression:?}");
            for (i, r) in decoded.iter().enumerate() {
                let i = i as i64;
                assert_eq!(r.partition, Some(3));
                assert_eq!(r.timestamp_ms, Some(1_000 + i), "{compression:?}");
                assert_eq!(r.key, records[i as usize].key, "{compression:?}");
                assert_eq!(r.value, records[i as usize].value, "{compression:?}");
                assert_eq!(r.headers, [header("h", &i.to_string()), header("n", "")], "{compression:?}");
            }
        }
    }

    #[test]
    fn repeated_header_names_keep_their_order_on_produce_and_fetch() {
        let headers = vec![header("a", "1"), header("b", "x"), header("a", "2")];
        let records = [stored(0, Some("k"), Some("v"), headers.clone()), stored(1, None, None, vec![])];
        let plain = batch(&records);
        let mut batches = vec![plain.clone().freeze()];
        batches.extend(CODECS.map(|c| compressed(&plain, c)));
        for bytes in batches {
            let (decoded, _) = decode_produce(bytes, 0, &mut DecompressBudget::new(1 << 20)).unwrap();
            assert_eq!(decoded[0].headers, headers);
            assert_eq!((decoded[1].key.as_ref(), decoded[1].value.as_ref()), (None, None));
            assert_eq!(decoded[1].headers, []);
        }
    }

    #[test]
    fn fetched_batches_read_back_with_kafka_protocols_decoder() {
        // Offsets with a gap (as compaction leaves them), a null key and a
        // null value; headers without repeats, which its map can hold.
        let records = [
            stored(2, Some("k2"), Some("v2"), vec![header("h", "1"), header("g", "")]),
            stored(3, None, Some(""), vec![]),
            stored(7, Some("k7"), None, vec![header("h", "7")]),
        ];
        let mut out = BytesMut::new();
        encode_records(100, &records, &mut out);
        encode_records(200, &records[..1], &mut out);
        encode_records(300, &[], &mut out);
        let sets = RecordBatchDecoder::decode_all(&mut out.freeze()).unwrap();
        let got: Vec<&KafkaRecord> = sets.iter().flat_map(|s| &s.records).collect();
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), [102, 103, 107, 202]);
        assert_eq!(
            got.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            [1_700_000_000_002, 1_700_000_000_003, 1_700_000_000_007, 1_700_000_000_002]
        );
        assert_eq!(got[1].key, None);
        assert_eq!(got[1].value.as_deref(), Some(&b""[..]));
        assert_eq!(got[2].value, None);
        assert_eq!(got[0].headers.len(), 2);
        assert_eq!(got[0].headers[&StrBytes::from_static_str("g")].as_deref(), Some(&b""[..]));
        assert!(got.iter().all(|r| r.producer_id == -1 && r.timestamp_type == TimestampType::Creation));
    }

    #[test]
    fn a_batch_decompressing_past_the_limit_is_refused() {
        // 1,000 records of 64 KiB of zeros: 64 MiB of records that compress
        // to a few hundred kilobytes.
        let value = "\0".repeat(64 << 10);
        let records: Vec<Record> = (0..1000).map(|i| stored(i, None, Some(&value), vec![])).collect();
        let plain = batch(&records);
        for codec in CODECS {
            let bomb = compressed(&plain, codec);
            assert!(bomb.len() < 4 << 20, "{codec:?}: {}", bomb.len());
            let err = decode_produce(bomb, 0, &mut DecompressBudget::new(1 << 20)).unwrap_err();
            assert_eq!(err.error, ResponseError::MessageTooLarge, "{codec:?}: {err}");
            assert!(err.message.contains("1048576"), "{err}");
        }
        // The limit covers all of a partition's batches together.
        // Two batches of 128 KiB of records each.
        let small = batch(&records[..2]);
        let two = [compressed(&small, Compression::Gzip), compressed(&small, Compression::Gzip)].concat();
        assert!(decode_produce(Bytes::from(two.clone()), 0, &mut DecompressBudget::new(300 << 10)).is_ok());
        let err = decode_produce(Bytes::from(two), 0, &mut DecompressBudget::new(200 << 10)).unwrap_err();
        assert_eq!(err.error, ResponseError::MessageTooLarge, "{err}");
    }

    #[test]
    fn malformed_batches_are_refused() {
        let plain = batch(&[stored(0, Some("k"), Some("v"), vec![header("a", "1")])]);
        let refused = |bytes: &[u8]| {
            decode_produce(Bytes::copy_from_slice(bytes), 0, &mut DecompressBudget::new(1 << 20)).unwrap_err()
        };
        // A flipped bit fails the CRC.
        let mut bad = plain.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(refused(&bad).error, ResponseError::CorruptMessage);
        // A count larger than its records, with a valid CRC.
        let mut bad = plain.clone();
        bad[COUNT_AT..COUNT_AT + 4].copy_from_slice(&2i32.to_be_bytes());
        bad[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&1i32.to_be_bytes());
        let crc = crc32c::crc32c(&bad[ATTRIBUTES_AT..]);
        bad[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(refused(&bad).error, ResponseError::CorruptMessage);
        // An unknown codec (5), a transactional batch, an old format.
        for (at, bits, error) in [
            (ATTRIBUTES_AT + 1, 5, ResponseError::UnsupportedCompressionType),
            (ATTRIBUTES_AT + 1, 1 << 4, ResponseError::InvalidRecord),
            (MAGIC_AT, 1 ^ 2, ResponseError::UnsupportedForMessageFormat),
        ] {
            let mut bad = plain.clone();
            bad[at] ^= bits;
            assert_eq!(refused(&bad).error, error, "{bits}");
        }
        // Garbage in place of gzip data.
        let mut bad = BytesMut::from(&plain[..]);
        bad[ATTRIBUTES_AT + 1] |= 1;
        let crc = crc32c::crc32c(&bad[ATTRIBUTES_AT..]);
        bad[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(refused(&bad).error, ResponseError::CorruptMessage);
        // A compressed batch claiming two billion records in a few bytes.
        let mut bad = BytesMut::from(&compressed(&plain, Compression::Zstd)[..]);
        bad[COUNT_AT..COUNT_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        bad[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&bad[ATTRIBUTES_AT..]);
        bad[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(refused(&bad).error, ResponseError::CorruptMessage);
        // Nothing at all.
        assert_eq!(refused(&[]).error, ResponseError::InvalidRecord);
    }

    /// `batch` with its CRC written again after an edit.
    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    }

    /// A small deterministic generator (xorshift64), so a failure repeats.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn cut_or_flipped_batches_are_refused_without_panicking() {
        let headers = vec![header("a", "1"), header("b", ""), header("a", "2")];
        let records = [
            stored(0, Some("key"), Some("value"), headers),
            stored(1, None, None, vec![]),
            stored(2, Some(""), Some(&"v".repeat(300)), vec![header("h", "x")]),
        ];
        let plain = batch(&records);
        let mut inputs = vec![plain.clone().freeze()];
        inputs.extend(CODECS.map(|c| compressed(&plain, c)));
        let decode = |bytes: &[u8]| {
            decode_produce(Bytes::copy_from_slice(bytes), 0, &mut DecompressBudget::new(1 << 20))
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for input in &inputs {
            assert_eq!(decode(input).unwrap().0.len(), 3);
            // Cut anywhere, with the length left as it was or made to match
            // the cut (and the CRC fixed, so the records are read).
            for len in 0..input.len() {
                assert!(decode(&input[..len]).is_err(), "cut at {len}");
                if len >= BATCH_HEADER {
                    let mut cut = input[..len].to_vec();
                    cut[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&(len as i32 - 12).to_be_bytes());
                    fix_crc(&mut cut);
                    assert!(decode(&cut).is_err(), "cut at {len}, length adjusted");
                }
            }
            // Flipped bits and random bytes, with the CRC fixed: an error
            // or records, never a panic.
            for round in 0..3000 {
                let mut bad = input.to_vec();
                for _ in 0..1 + round % 4 {
                    let at = rng.below(bad.len());
                    if round % 2 == 0 {
                        bad[at] ^= 1 << rng.below(8);
                    } else {
                        bad[at] = rng.next() as u8;
                    }
                }
                fix_crc(&mut bad);
                let _ = decode(&bad);
            }
        }
        // Random bytes behind a valid header.
        for _ in 0..3000 {
            let mut bad = plain[..BATCH_HEADER].to_vec();
            bad.extend((0..rng.below(64)).map(|_| rng.next() as u8));
            let length = bad.len() as i32 - 12;
            bad[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
            fix_crc(&mut bad);
            assert!(decode(&bad).is_err());
        }
    }

    #[test]
    fn a_batch_whose_count_or_last_offset_delta_is_wrong_is_an_invalid_record() {
        let plain = batch(&[stored(0, None, Some("a"), vec![]), stored(1, None, Some("b"), vec![])]);
        let refused = |field: usize, value: i32| {
            let mut bad = plain.to_vec();
            bad[field..field + 4].copy_from_slice(&value.to_be_bytes());
            fix_crc(&mut bad);
            decode_produce(Bytes::from(bad), 0, &mut DecompressBudget::new(1 << 20)).unwrap_err()
        };
        for (field, value) in
            [(COUNT_AT, 0), (COUNT_AT, -1), (LAST_OFFSET_DELTA_AT, 0), (LAST_OFFSET_DELTA_AT, 5)]
        {
            let err = refused(field, value);
            assert_eq!(err.error, ResponseError::InvalidRecord, "{field} = {value}: {err}");
        }
        assert!(refused(LAST_OFFSET_DELTA_AT, 0).message.contains("last offset delta 0"));
        // A batch of no records with a consistent header is refused too.
        let mut empty = plain[..BATCH_HEADER].to_vec();
        empty[COUNT_AT..COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
        empty[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        empty[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&(BATCH_HEADER as i32 - 12).to_be_bytes());
        fix_crc(&mut empty);
        let two = [&plain[..], &empty[..]].concat();
        let err = decode_produce(Bytes::from(two), 0, &mut DecompressBudget::new(1 << 20)).unwrap_err();
        assert_eq!(err.error, ResponseError::InvalidRecord, "{err}");
    }

    #[test]
    fn a_record_with_too_many_headers_is_refused_before_they_are_read() {
        let many = |n: usize| (0..n).map(|i| header(&format!("h{i}"), "")).collect::<Vec<_>>();
        let ok = batch(&[stored(0, None, Some("v"), many(MAX_HEADERS))]);
        let (decoded, _) = decode_produce(ok.freeze(), 0, &mut DecompressBudget::new(1 << 20)).unwrap();
        assert_eq!(decoded[0].headers.len(), MAX_HEADERS);
        let over = batch(&[stored(0, None, Some("v"), many(MAX_HEADERS + 1))]);
        let err = decode_produce(over.freeze(), 0, &mut DecompressBudget::new(1 << 20)).unwrap_err();
        assert_eq!(err.error, ResponseError::InvalidRecord, "{err}");
        assert!(err.message.contains("1025 headers") && err.message.contains("1024"), "{err}");
        // A header count the record's bytes cannot hold is corrupt.
        let mut bad = batch(&[stored(0, None, Some("v"), many(1))]).to_vec();
        let at = bad.len() - 5; // count (1), name length, "h0", value length
        assert_eq!(bad[at], 2, "the header count, zigzag-encoded");
        bad[at] = 6;
        fix_crc(&mut bad);
        let err = decode_produce(Bytes::from(bad), 0, &mut DecompressBudget::new(1 << 20)).unwrap_err();
        assert_eq!(err.error, ResponseError::CorruptMessage, "{err}");
    }

    #[test]
    fn fetched_edge_cases_read_back_with_kafka_protocols_decoder_and_ours() {
        let many: Vec<Header> = (0..MAX_HEADERS).map(|i| header(&format!("h{i}"), &i.to_string())).collect();
        let large = "x".repeat((1 << 20) - 100);
        let records = [
            stored(0, None, None, vec![]),
            stored(1, None, Some(""), vec![]),
            stored(2, Some(""), Some("v"), vec![header("empty", "")]),
            stored(3, Some("k"), Some("v"), many.clone()),
            stored(4, Some("big"), Some(&large), vec![]),
        ];
        let mut out = BytesMut::new();
        encode_records(1_000, &records, &mut out);
        let encoded = out.freeze();
        let sets = RecordBatchDecoder::decode_all(&mut encoded.clone()).unwrap();
        assert_eq!(sets.len(), 1);
        let got = &sets[0].records;
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), [1000, 1001, 1002, 1003, 1004]);
        assert_eq!((got[0].key.as_deref(), got[0].value.as_deref()), (None, None));
        assert_eq!((got[1].key.as_deref(), got[1].value.as_deref()), (None, Some(&b""[..])));
        assert_eq!(got[2].key.as_deref(), Some(&b""[..]));
        assert!(got[0].headers.is_empty());
        assert_eq!(got[3].headers.len(), MAX_HEADERS);
        assert_eq!(got[3].headers[&StrBytes::from_static_str("h1023")].as_deref(), Some(&b"1023"[..]));
        assert_eq!(got[4].value.as_ref().map(Bytes::len), Some(large.len()));
        for r in got {
            assert_eq!(r.timestamp, 1_700_000_000_000 + r.offset - 1_000);
            assert_eq!((r.producer_id, r.producer_epoch), (-1, -1));
        }
        // The header fields Kafka's consumers read, as written.
        let header_i64 = |at: usize| i64::from_be_bytes(be(&encoded, at));
        let header_i32 = |at: usize| i32::from_be_bytes(be(&encoded, at));
        assert_eq!(header_i64(0), 1_000, "base offset");
        assert_eq!(header_i32(LENGTH_AT) as usize, encoded.len() - 12);
        assert_eq!(header_i32(LAST_OFFSET_DELTA_AT), 4);
        assert_eq!(header_i64(BASE_TIMESTAMP_AT), 1_700_000_000_000);
        assert_eq!(header_i64(BASE_TIMESTAMP_AT + 8), 1_700_000_000_004, "max timestamp");
        assert_eq!(header_i32(COUNT_AT), 5);
        assert_eq!(header_i64(PRODUCER_ID_AT), -1);
        assert_eq!(i16::from_be_bytes(be(&encoded, PRODUCER_EPOCH_AT)), -1);
        assert_eq!(header_i32(BASE_SEQUENCE_AT), -1);
        assert_eq!(i16::from_be_bytes(be(&encoded, ATTRIBUTES_AT)), 0, "create time, uncompressed");
        // And our own reader takes back what we write, headers in order.
        let (decoded, claim) = decode_produce(encoded, 0, &mut DecompressBudget::new(0)).unwrap();
        assert_eq!(claim, None);
        let values: Vec<Option<&[u8]>> = decoded.iter().map(|r| r.value.as_deref()).collect();
        assert_eq!(values, [None, Some(&b""[..]), Some(&b"v"[..]), Some(&b"v"[..]), Some(large.as_bytes())]);
        assert_eq!(decoded[3].headers, many);
    }

    #[test]
    fn stored_encodings_are_read_as_their_protobuf_decoder_reads_them() {
        let plain = stored(4, Some("k"), Some("v"), vec![header("a", "1"), header("a", "2")]);
        let mut odd = plain.encode_to_vec();
        // An unknown varint field, an unknown length-delimited one, a
        // second value (the last wins) and a header with an unknown field.
        odd.extend_from_slice(&[9 << 3, 0x96, 0x01]);
        odd.extend_from_slice(&[(7 << 3) | 2, 2, 0xff, 0xfe]);
        odd.extend_from_slice(&[(4 << 3) | 2, 3, b'n', b'e', b'w']);
        odd.extend_from_slice(&[(5 << 3) | 2, 7, (1 << 3) | 2, 1, b'b', (3 << 3), 1, (2 << 3) | 2, 0]);
        let expected = Record::decode(&odd[..]).unwrap();
        assert_eq!(expected.value.as_deref(), Some(&b"new"[..]));
        assert_eq!(expected.headers.len(), 3);
        let mut out = BytesMut::new();
        encode_batch(10, &[Bytes::from(odd)], &mut Vec::new(), &mut out).unwrap();
        let (decoded, _) = decode_produce(out.freeze(), 0, &mut DecompressBudget::new(0)).unwrap();
        assert_eq!(decoded[0].timestamp_ms, Some(expected.timestamp_ms));
        assert_eq!((&decoded[0].key, &decoded[0].value), (&expected.key, &expected.value));
        assert_eq!(decoded[0].headers, expected.headers);
        // A damaged encoding is an error, never a panic.
        let mut rng = Rng(7);
        let good = plain.encode_to_vec();
        for _ in 0..5000 {
            let mut bad = good.clone();
            bad.truncate(rng.below(good.len() + 1));
            if !bad.is_empty() {
                let at = rng.below(bad.len());
                bad[at] = rng.next() as u8;
            }
            let _ = encode_batch(0, &[Bytes::from(bad)], &mut Vec::new(), &mut BytesMut::new());
        }
        static WRONG_TYPE: [u8; 2] = [(1 << 3) | 2, 0];
        assert!(
            encode_batch(0, &[Bytes::from_static(&WRONG_TYPE)], &mut Vec::new(), &mut BytesMut::new())
                .is_err()
        );
    }

    #[test]
    fn producer_timestamps_are_kept_unless_the_batch_asks_for_log_append_time() {
        let records = [stored(0, None, Some("a"), vec![]), stored(1, None, Some("b"), vec![])];
        let plain = batch(&records);
        let (decoded, _) = decode_produce(plain.clone().freeze(), 0, &mut DecompressBudget::new(0)).unwrap();
        let times: Vec<Option<i64>> = decoded.iter().map(|r| r.timestamp_ms).collect();
        assert_eq!(times, [Some(1_700_000_000_000), Some(1_700_000_000_001)]);
        let mut append_time = plain.to_vec();
        append_time[ATTRIBUTES_AT + 1] |= LOG_APPEND_TIME as u8;
        fix_crc(&mut append_time);
        let (decoded, _) =
            decode_produce(Bytes::from(append_time), 0, &mut DecompressBudget::new(0)).unwrap();
        assert!(decoded.iter().all(|r| r.timestamp_ms.is_none()), "the broker's time is taken");
    }

    #[test]
    fn varints_match_their_lengths() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, 8192, i64::from(i32::MAX), i64::MIN, i64::MAX] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let bytes = out.freeze();
            assert_eq!(Reader { bytes: &bytes, at: 0, end: bytes.len() }.varint().unwrap(), v);
        }
    }
}
