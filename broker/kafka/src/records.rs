//! RecordBatch v2 ⇄ the core's records, through `kafka-protocol`'s records
//! module (which checks and writes the CRC32C).

use brooklet_core::{Header, NewRecord, StoredRecords};
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Bytes of a v2 batch header before its first record.
const BATCH_HEADER: usize = 61;
/// The smallest encoding of one record: length, attributes, timestamp
/// delta, offset delta, key length, value length, header count.
const MIN_RECORD: usize = 7;

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
/// producer's claim if the batch is idempotent. Only uncompressed v2
/// batches are accepted; an idempotent producer sends one batch.
pub(crate) fn decode_produce(
    mut bytes: Bytes,
    partition: u32,
) -> Result<(Vec<NewRecord>, Option<ProducerClaim>), BatchError> {
    let claim = check_batches(&bytes)?;
    let sets = RecordBatchDecoder::decode_all(&mut bytes)
        .map_err(|e| refuse(ResponseError::CorruptMessage, format!("cannot decode the record batch: {e}")))?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            let timestamp_ms = match r.timestamp_type {
                TimestampType::Creation if r.timestamp >= 0 => Some(r.timestamp),
                _ => None,
            };
            let headers = r
                .headers
                .into_iter()
                .map(|(name, value)| Header {
                    name: name.as_str().to_owned(),
                    value: value.unwrap_or_default(),
                })
                .collect();
            out.push(NewRecord {
                partition: Some(partition),
                timestamp_ms,
                key: r.key,
                value: r.value,
                headers,
            });
        }
    }
    if out.is_empty() {
        return Err(refuse(ResponseError::InvalidRecord, "the request carries no record"));
    }
    Ok((out, claim))
}

/// Checks each batch's header before it is decoded: format v2, a record
/// count its length can hold (so that decoding never reserves memory for
/// records that are not there), no compression, not transactional; a batch
/// with a producer id is the only one. Returns that producer's claim.
fn check_batches(bytes: &[u8]) -> Result<Option<ProducerClaim>, BatchError> {
    let mut rest = bytes;
    let (mut batches, mut claim) = (0, None);
    while !rest.is_empty() {
        if rest.len() < BATCH_HEADER {
            return Err(refuse(ResponseError::CorruptMessage, "a record batch is shorter than its header"));
        }
        let be32 = |at: usize| i32::from_be_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
        let length = be32(8);
        let magic = rest[16];
        if magic != 2 {
            return Err(refuse(
                ResponseError::UnsupportedForMessageFormat,
                format!("record batch format v{magic} is not supported: only v2"),
            ));
        }
        let total = usize::try_from(length).ok().and_then(|l| l.checked_add(12)).filter(|t| *t <= rest.len());
        let Some(total) = total.filter(|t| *t >= BATCH_HEADER) else {
            return Err(refuse(
                ResponseError::CorruptMessage,
                format!("a record batch's length {length} is wrong"),
            ));
        };
        let attributes = i16::from_be_bytes([rest[21], rest[22]]);
        if attributes & 0x7 != 0 {
            return Err(refuse(
                ResponseError::UnsupportedCompressionType,
                "compressed record batches are not supported yet: send them uncompressed",
            ));
        }
        if attributes & (1 << 4) != 0 {
            return Err(refuse(
                ResponseError::InvalidRecord,
                "transactional producers are not supported yet",
            ));
        }
        if attributes & (1 << 5) != 0 {
            return Err(refuse(ResponseError::InvalidRecord, "control batches cannot be produced"));
        }
        let producer_id = i64::from_be_bytes(rest[43..51].try_into().unwrap_or_default());
        if producer_id >= 0 {
            let base_sequence = be32(53);
            if base_sequence < 0 {
                return Err(refuse(
                    ResponseError::InvalidRecord,
                    format!("an idempotent batch's base sequence {base_sequence} is negative"),
                ));
            }
            let producer_epoch = i16::from_be_bytes([rest[51], rest[52]]);
            claim = Some(ProducerClaim { producer_id, producer_epoch, base_sequence });
        }
        batches += 1;
        if claim.is_some() && batches > 1 {
            return Err(refuse(
                ResponseError::InvalidRecord,
                "an idempotent producer sends one batch per partition",
            ));
        }
        let count = be32(57);
        let fits = usize::try_from(count).is_ok_and(|c| c.saturating_mul(MIN_RECORD) <= total - BATCH_HEADER);
        if !fits {
            return Err(refuse(
                ResponseError::CorruptMessage,
                format!("a record batch cannot hold {count} records"),
            ));
        }
        crate::walk::check_records(&rest[BATCH_HEADER..total], count as usize).map_err(|e| {
            refuse(ResponseError::CorruptMessage, format!("a record batch is malformed: {e}"))
        })?;
        rest = &rest[total..];
    }
    Ok(claim)
}

/// The core's stored records as RecordBatch v2 batches, at their offsets.
pub(crate) fn encode_fetched(batches: &[StoredRecords], out: &mut BytesMut) -> Result<(), String> {
    for stored in batches {
        let decoded = stored.decode().map_err(|e| format!("cannot decode stored records: {e}"))?;
        let Some(first) = decoded.first().map(|r| stored.base_offset() + u64::from(r.offset_delta)) else {
            continue;
        };
        let mut records = Vec::with_capacity(decoded.len());
        for r in decoded {
            let offset = stored.base_offset() + u64::from(r.offset_delta);
            let mut headers = IndexMap::with_capacity(r.headers.len());
            for h in r.headers {
                headers.insert(StrBytes::from_string(h.name), Some(h.value));
            }
            records.push(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: offset as i64,
                // The encoder keeps records in one batch while offset −
                // sequence stays the same, and writes the first one's
                // sequence as the batch's: -1, no producer.
                sequence: (offset - first) as i32 - 1,
                timestamp: r.timestamp_ms,
                key: r.key,
                value: r.value,
                headers,
            });
        }
        let options = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(out, &records, &options)
            .map_err(|e| format!("cannot encode records: {e}"))?;
    }
    Ok(())
}
