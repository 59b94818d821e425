//! RecordBatch v2 ⇄ the core's records, read and written here field by
//! field: Kafka records may repeat a header name, in order, which a map of
//! headers (as `kafka-protocol`'s records module keeps them) would collapse.
//! Each batch's CRC32C is checked on produce and written on fetch; produced
//! batches may be compressed, fetched ones never are.

use brooklet_core::{Header, NewRecord, Record, StoredRecords};
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

/// The records of a produce request's partition, for `partition`, with the
/// producer's claim if the batch is idempotent. Batches are v2, compressed
/// or not; their records decompress to at most `limit` bytes in all. An
/// idempotent producer sends one batch.
pub(crate) fn decode_produce(
    mut rest: Bytes,
    partition: u32,
    limit: usize,
) -> Result<(Vec<NewRecord>, Option<ProducerClaim>), BatchError> {
    let (mut batches, mut claim) = (0, None);
    let mut decompressed_left = limit;
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
                let records = compression::decompress(codec, &batch[BATCH_HEADER..], decompressed_left)
                    .map_err(|e| match e {
                        DecompressError::TooLarge { .. } => refuse(
                            ResponseError::MessageTooLarge,
                            format!("{e}: the limit of a produce request's records (--max-request-bytes)"),
                        ),
                        DecompressError::Corrupt { .. } => {
                            refuse(ResponseError::CorruptMessage, e.to_string())
                        }
                    })?;
                decompressed_left -= records.len();
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
        let mut reader = Reader { bytes: &records, at: 0 };
        for _ in 0..count {
            let record = reader
                .record(header.base_timestamp, header.log_append_time, partition)
                .map_err(|e| refuse(ResponseError::CorruptMessage, format!("a record is malformed: {e}")))?;
            out.push(record);
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
/// non-negative record count; an idempotent batch has a non-negative base
/// sequence.
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
    let count = i32::from_be_bytes(be(rest, COUNT_AT));
    let count = usize::try_from(count).map_err(|_| {
        refuse(ResponseError::CorruptMessage, format!("a record batch counts {count} records"))
    })?;
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
/// header values share its bytes.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<i64, String> {
        let mut z = 0u64;
        for i in 0..10 {
            let &b = self.bytes.get(self.at).ok_or("a varint is cut short")?;
            self.at += 1;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    fn take(&mut self, len: usize, end: usize) -> Result<Bytes, String> {
        let until = self.at.checked_add(len).filter(|u| *u <= end).ok_or("a field runs past its record")?;
        let out = self.bytes.slice(self.at..until);
        self.at = until;
        Ok(out)
    }

    /// Bytes with a varint length; a negative length is null.
    fn nullable(&mut self, end: usize) -> Result<Option<Bytes>, String> {
        match usize::try_from(self.varint()?) {
            Ok(len) => self.take(len, end).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn record(
        &mut self,
        base_timestamp: i64,
        log_append_time: bool,
        partition: u32,
    ) -> Result<NewRecord, String> {
        let len = self.varint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.at.checked_add(l))
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| format!("a record length of {len} runs past its batch"))?;
        self.take(1, end)?; // attributes: unused in v2
        let timestamp = base_timestamp.checked_add(self.varint()?).ok_or("a timestamp overflows")?;
        self.varint()?; // offset delta: the broker assigns offsets
        let key = self.nullable(end)?;
        let value = self.nullable(end)?;
        let count = self.varint()?;
        let count = usize::try_from(count)
            .ok()
            .filter(|c| *c <= end - self.at)
            .ok_or_else(|| format!("a record counts {count} headers"))?;
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name_len = self.varint()?;
            let name_len =
                usize::try_from(name_len).map_err(|_| format!("a header name length of {name_len}"))?;
            let name = self.take(name_len, end)?;
            let name = std::str::from_utf8(&name).map_err(|_| "a header name is not UTF-8")?.to_owned();
            // A null header value is kept as an empty one.
            let value = self.nullable(end)?.unwrap_or_default();
            headers.push(Header { name, value });
        }
        if self.at != end {
            return Err(format!("{} bytes follow a record's headers", end - self.at));
        }
        let timestamp_ms = (!log_append_time && timestamp >= 0).then_some(timestamp);
        Ok(NewRecord { partition: Some(partition), timestamp_ms, key, value, headers })
    }
}

/// The core's stored records as uncompressed RecordBatch v2 batches, at
/// their offsets: one batch per stored batch.
pub(crate) fn encode_fetched(batches: &[StoredRecords], out: &mut BytesMut) -> Result<(), String> {
    for stored in batches {
        let decoded = stored.decode().map_err(|e| format!("cannot decode stored records: {e}"))?;
        encode_batch(stored.base_offset(), &decoded, out)?;
    }
    Ok(())
}

/// Appends one batch of `records`, whose offsets are `base_offset` plus
/// their offset deltas; nothing for no records.
fn encode_batch(base_offset: u64, records: &[Record], out: &mut BytesMut) -> Result<(), String> {
    let Some(first) = records.first() else { return Ok(()) };
    let first_offset = base_offset + u64::from(first.offset_delta);
    let base_timestamp = first.timestamp_ms;
    let start = out.len();
    out.put_bytes(0, BATCH_HEADER);
    let (mut last_delta, mut max_timestamp) = (0, base_timestamp);
    for r in records {
        let delta = r
            .offset_delta
            .checked_sub(first.offset_delta)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or_else(|| format!("stored records out of offset order at delta {}", r.offset_delta))?;
        let timestamp_delta = r.timestamp_ms.wrapping_sub(base_timestamp);
        let headers: usize = r
            .headers
            .iter()
            .map(|h| {
                varint_len(h.name.len() as i64)
                    + h.name.len()
                    + varint_len(h.value.len() as i64)
                    + h.value.len()
            })
            .sum();
        let body = 1
            + varint_len(timestamp_delta)
            + varint_len(i64::from(delta))
            + nullable_len(r.key.as_deref())
            + nullable_len(r.value.as_deref())
            + varint_len(r.headers.len() as i64)
            + headers;
        out.reserve(varint_len(body as i64) + body);
        put_varint(out, body as i64);
        out.put_u8(0);
        put_varint(out, timestamp_delta);
        put_varint(out, i64::from(delta));
        put_nullable(out, r.key.as_deref());
        put_nullable(out, r.value.as_deref());
        put_varint(out, r.headers.len() as i64);
        for h in &r.headers {
            put_varint(out, h.name.len() as i64);
            out.put_slice(h.name.as_bytes());
            put_varint(out, h.value.len() as i64);
            out.put_slice(&h.value);
        }
        last_delta = delta;
        max_timestamp = max_timestamp.max(r.timestamp_ms);
    }
    let length = i32::try_from(out.len() - start - 12).map_err(|_| "a batch larger than 2 GiB".to_owned())?;
    let count = i32::try_from(records.len()).map_err(|_| "too many records for one batch".to_owned())?;
    let mut header = &mut out[start..start + BATCH_HEADER];
    header.put_i64(first_offset as i64);
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

    use super::*;

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
        encode_batch(0, records, &mut out).unwrap();
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
            let (decoded, claim) = decode_produce(out.freeze(), 3, 1 << 20).unwrap();
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
            let (decoded, _) = decode_produce(bytes, 0, 1 << 20).unwrap();
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
        encode_batch(100, &records, &mut out).unwrap();
        encode_batch(200, &records[..1], &mut out).unwrap();
        encode_batch(300, &[], &mut out).unwrap();
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
            let err = decode_produce(bomb, 0, 1 << 20).unwrap_err();
            assert_eq!(err.error, ResponseError::MessageTooLarge, "{codec:?}: {err}");
            assert!(err.message.contains("1048576"), "{err}");
        }
        // The limit covers all of a partition's batches together.
        // Two batches of 128 KiB of records each.
        let small = batch(&records[..2]);
        let two = [compressed(&small, Compression::Gzip), compressed(&small, Compression::Gzip)].concat();
        assert!(decode_produce(Bytes::from(two.clone()), 0, 300 << 10).is_ok());
        let err = decode_produce(Bytes::from(two), 0, 200 << 10).unwrap_err();
        assert_eq!(err.error, ResponseError::MessageTooLarge, "{err}");
    }

    #[test]
    fn malformed_batches_are_refused() {
        let plain = batch(&[stored(0, Some("k"), Some("v"), vec![header("a", "1")])]);
        let refused = |bytes: &[u8]| decode_produce(Bytes::copy_from_slice(bytes), 0, 1 << 20).unwrap_err();
        // A flipped bit fails the CRC.
        let mut bad = plain.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(refused(&bad).error, ResponseError::CorruptMessage);
        // A count larger than its records, with a valid CRC.
        let mut bad = plain.clone();
        bad[COUNT_AT..COUNT_AT + 4].copy_from_slice(&2i32.to_be_bytes());
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
        let crc = crc32c::crc32c(&bad[ATTRIBUTES_AT..]);
        bad[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(refused(&bad).error, ResponseError::CorruptMessage);
        // Nothing at all.
        assert_eq!(refused(&[]).error, ResponseError::InvalidRecord);
    }

    #[test]
    fn varints_match_their_lengths() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, 8192, i64::from(i32::MAX), i64::MIN, i64::MAX] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let bytes = out.freeze();
            assert_eq!(Reader { bytes: &bytes, at: 0 }.varint().unwrap(), v);
        }
    }
}
