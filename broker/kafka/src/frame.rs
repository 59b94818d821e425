//! Frames: a 4-byte big-endian size, then a request header (whose version
//! follows from the API and its version) and the request; a response is the
//! size, a response header with the request's correlation id, and the body
//! encoded for the version the request named.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// The APIs this adapter implements, with the versions it implements:
/// what ApiVersions advertises, and all it answers.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    // v0 is advertised because some clients require it to be before they
    // use v1; a v0 handshake (raw SASL tokens to follow, without Kafka
    // framing) is answered UNSUPPORTED_VERSION: see `sasl`.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The versions of `key` this adapter implements.
pub(crate) fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max))
}

/// Why a frame could not be served, or why its connection must close; the
/// connection is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {0} bytes is shorter than a request header")]
    Short(usize),
    #[error("frame size {size} is outside 0..={limit}: the request size limit is {limit} bytes")]
    Size { size: i32, limit: usize },
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion { api: ApiKey, version: i16, min: i16, max: i16 },
    #[error("{api:?} v{version} API is not implemented")]
    NotImplemented { api: ApiKey, version: i16 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("cannot encode the {api:?} v{version} response: {reason}")]
    Encode { api: ApiKey, version: i16, reason: String },
    /// The connection's first bytes are HTTP/2's preface, not a size.
    #[error("HTTP/2 (a gRPC client?) on the Kafka listener; gRPC is served on --listen")]
    Http2,
    /// The connection's first bytes are a TLS handshake, not a size.
    #[error("TLS on a plain-text Kafka listener: connect without TLS")]
    Tls,
    /// A produce with acks 0 was refused for some partition: the
    /// connection is closed, as the client hears of it no other way.
    #[error(
        "produce with acks 0 refused for {topic}/{partition} ({error}){more}; closing the connection \
         so that the client refreshes its metadata"
    )]
    AcksZeroRefused { topic: String, partition: i32, error: String, more: String },
    /// The client closed the connection inside a frame.
    #[error("the client closed the connection {got} bytes into a frame of {size}")]
    CutShort { size: usize, got: usize },
}

/// A request's frame, its header read.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A request of an implemented API and version.
    Request { api: ApiKey, version: i16, header: RequestHeader, body: Bytes },
    /// ApiVersions of a version this adapter does not implement: answered
    /// as Kafka does, with a v0 response naming the supported versions.
    UnsupportedApiVersions { correlation_id: i32 },
}

/// Reads a frame's request header and checks its API and version.
pub(crate) fn parse(mut frame: Bytes) -> Result<Parsed, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Short(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|()| FrameError::UnknownApi(key))?;
    let Some((min, max)) = supported(api) else {
        return Err(FrameError::NotImplemented { api, version });
    };
    if !(min..=max).contains(&version) {
        if api == ApiKey::ApiVersions {
            return Ok(Parsed::UnsupportedApiVersions { correlation_id });
        }
        return Err(FrameError::UnsupportedVersion { api, version, min, max });
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| FrameError::Malformed { what: "request header".into(), reason: e.to_string() })?;
    Ok(Parsed::Request { api, version, header, body: frame })
}

/// Decodes a request body of `version`.
pub(crate) fn decode<R: Decodable>(api: ApiKey, version: i16, mut body: Bytes) -> Result<R, FrameError> {
    crate::walk::check(api, version, &body)
        .map_err(|reason| FrameError::Malformed { what: format!("{api:?} v{version} request"), reason })?;
    let request = R::decode(&mut body, version).map_err(|e| FrameError::Malformed {
        what: format!("{api:?} v{version} request"),
        reason: e.to_string(),
    })?;
    if body.has_remaining() {
        tracing::debug!(api = ?api, version, extra = body.remaining(), "request has trailing bytes");
    }
    Ok(request)
}

/// A whole response frame: size, header, body encoded for `version`.
pub(crate) fn encode<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, FrameError> {
    let encode_error = |reason: String| FrameError::Encode { api, version, reason };
    // Sized up front: a fetch response of many megabytes is not copied
    // again each time its buffer grows.
    let size = body.compute_size(version).map_err(|e| encode_error(e.to_string()))?;
    let mut out = BytesMut::with_capacity(64 + size);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api.response_header_version(version))
        .map_err(|e| encode_error(e.to_string()))?;
    body.encode(&mut out, version).map_err(|e| encode_error(e.to_string()))?;
    let size = i32::try_from(out.len() - 4).map_err(|_| encode_error("larger than 2 GiB".into()))?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn request<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
        let mut out = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test")))
            .encode(&mut out, api.request_header_version(version))
            .unwrap();
        body.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn a_request_header_is_read_for_its_api_and_version() {
        for version in 0..=12 {
            let frame = request(ApiKey::Metadata, version, 7, &MetadataRequest::default());
            let Parsed::Request { api, version: v, header, body } = parse(frame).unwrap() else {
                panic!("expected a request");
            };
            assert_eq!((api, v, header.correlation_id), (ApiKey::Metadata, version, 7));
            assert_eq!(header.client_id.as_deref(), Some("test"));
            decode::<MetadataRequest>(api, v, body).unwrap();
        }
    }

    #[test]
    fn an_unsupported_api_versions_version_is_answered_not_refused() {
        let frame = request(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
        let mut raw = BytesMut::from(&frame[..]);
        raw[3] = 99; // version 99
        assert!(matches!(parse(raw.freeze()), Ok(Parsed::UnsupportedApiVersions { correlation_id: 1 })));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(parse(Bytes::from_static(&[0, 3])), Err(FrameError::Short(2))));
        assert!(matches!(
            parse(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1])),
            Err(FrameError::UnknownApi(_))
        ));
        // Fetch v99 and a not-implemented API (AddPartitionsToTxn).
        assert!(matches!(
            parse(Bytes::from_static(&[0, 1, 0, 99, 0, 0, 0, 1])),
            Err(FrameError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            parse(Bytes::from_static(&[0, 24, 0, 1, 0, 0, 0, 1])),
            Err(FrameError::NotImplemented { .. })
        ));
        // A header cut short, then a body cut short.
        assert!(matches!(
            parse(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 9, b'a'])),
            Err(FrameError::Malformed { .. })
        ));
        let frame = request(ApiKey::Metadata, 1, 1, &MetadataRequest::default());
        let Parsed::Request { api, version, body, .. } = parse(frame).unwrap() else { panic!() };
        assert!(decode::<MetadataRequest>(api, version, body.slice(..2)).is_err());
    }

    #[test]
    fn an_array_counting_more_elements_than_the_frame_holds_is_refused_before_decoding() {
        use kafka_protocol::messages::ProduceRequest;
        // Produce v3: no transactional id, acks 1, timeout, then a topic
        // array claiming i32::MAX topics in a frame of a few bytes.
        let mut body = BytesMut::new();
        body.put_i16(-1);
        body.put_i16(1);
        body.put_i32(1000);
        body.put_i32(i32::MAX);
        let err = decode::<ProduceRequest>(ApiKey::Produce, 3, body.freeze()).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { .. }), "{err}");
        // Fetch v12 (flexible): a compact array claiming 2^32 - 2 topics.
        let mut body = BytesMut::new();
        body.put_slice(&[0; 4 + 4 + 4 + 4 + 1 + 8]);
        body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err =
            decode::<kafka_protocol::messages::FetchRequest>(ApiKey::Fetch, 12, body.freeze()).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { .. }), "{err}");
    }

    #[test]
    fn well_formed_requests_of_every_version_pass_the_walk() {
        use kafka_protocol::messages::{
            FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
            fetch_request::{FetchPartition, FetchTopic, ForgottenTopic},
            list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
            metadata_request::MetadataRequestTopic,
            produce_request::{PartitionProduceData, TopicProduceData},
        };
        let name = || TopicName(StrBytes::from_static_str("t"));
        let frame = |api: ApiKey, version: i16, body: &dyn Fn(&mut BytesMut)| {
            let mut out = BytesMut::new();
            body(&mut out);
            let left =
                crate::walk::check(api, version, &out).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
            assert_eq!(left, 0, "{api:?} v{version}: the walk follows the schema to its end");
        };
        for v in 0..=12 {
            let topic = MetadataRequestTopic::default().with_name(Some(name()));
            let r = MetadataRequest::default()
                .with_topics(Some(vec![topic, MetadataRequestTopic::default().with_name(Some(name()))]));
            frame(ApiKey::Metadata, v, &|b| r.encode(b, v).unwrap());
        }
        for v in 3..=9 {
            let p =
                PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from_static(b"abc")));
            let t = TopicProduceData::default().with_name(name()).with_partition_data(vec![p.clone(), p]);
            let r = ProduceRequest::default().with_acks(1).with_topic_data(vec![t.clone(), t]);
            frame(ApiKey::Produce, v, &|b| r.encode(b, v).unwrap());
        }
        for v in 4..=12 {
            let p = FetchPartition::default().with_partition(0).with_fetch_offset(5);
            let t = FetchTopic::default().with_topic(name()).with_partitions(vec![p.clone(), p]);
            let mut r = FetchRequest::default().with_topics(vec![t.clone(), t]);
            if v >= 7 {
                r.forgotten_topics_data =
                    vec![ForgottenTopic::default().with_topic(name()).with_partitions(vec![1, 2])];
            }
            if v >= 11 {
                r.rack_id = StrBytes::from_static_str("rack");
            }
            frame(ApiKey::Fetch, v, &|b| r.encode(b, v).unwrap());
        }
        for v in 1..=7 {
            let p = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
            let t = ListOffsetsTopic::default().with_name(name()).with_partitions(vec![p.clone(), p]);
            let r = ListOffsetsRequest::default().with_topics(vec![t.clone(), t]);
            frame(ApiKey::ListOffsets, v, &|b| r.encode(b, v).unwrap());
        }
    }

    #[test]
    fn a_response_frame_starts_with_its_size_and_correlation_id() {
        let body = kafka_protocol::messages::ApiVersionsResponse::default();
        let frame = encode(ApiKey::ApiVersions, 3, 42, &body).unwrap();
        assert_eq!(i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
        assert_eq!(i32::from_be_bytes(frame[4..8].try_into().unwrap()), 42);
    }
}
