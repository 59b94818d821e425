//! The error codes a response carries, wherever its version puts them (at
//! the top, per group, topic, partition or member), so that the server
//! counts every refusal it answers in one place.

use kafka_protocol::messages::{AlterConfigsResponse, IncrementalAlterConfigsResponse, OffsetDeleteResponse};
use kafka_protocol::messages::{
    ApiVersionsResponse, CreateTopicsResponse, DeleteGroupsResponse, DeleteTopicsResponse,
    DescribeConfigsResponse, DescribeGroupsResponse, FetchResponse, FindCoordinatorResponse,
    HeartbeatResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse,
    ListOffsetsResponse, MetadataResponse, OffsetCommitResponse, OffsetFetchResponse, ProduceResponse,
    SyncGroupResponse,
};
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

/// A response's error codes, 0 (none) included.
pub(crate) trait ErrorCodes {
    /// Calls `each` with every error code in the response.
    fn error_codes(&self, each: &mut dyn FnMut(i16));
}

macro_rules! top_level {
    ($($response:ty),*) => {$(
        impl ErrorCodes for $response {
            fn error_codes(&self, each: &mut dyn FnMut(i16)) {
                each(self.error_code);
            }
        }
    )*};
}

top_level!(
    ApiVersionsResponse,
    InitProducerIdResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    ListGroupsResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse
);

impl ErrorCodes for MetadataResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            each(t.error_code);
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}

impl ErrorCodes for ProduceResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| each(p.error_code));
    }
}

impl ErrorCodes for FetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.responses.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.topics.iter().for_each(|t| each(t.error_code));
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|t| each(t.error_code));
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| each(r.error_code));
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.coordinators.iter().for_each(|c| each(c.error_code));
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.members.iter().for_each(|m| each(m.error_code));
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
        for g in &self.groups {
            each(g.error_code);
            g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.groups.iter().for_each(|g| each(g.error_code));
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|g| each(g.error_code));
    }
}

impl ErrorCodes for AlterConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| each(r.error_code));
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| each(r.error_code));
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
    };

    use super::*;

    fn codes(response: &impl ErrorCodes) -> Vec<i16> {
        let mut out = Vec::new();
        response.error_codes(&mut |c| out.push(c));
        out
    }

    #[test]
    fn codes_are_found_at_every_level_a_version_puts_them() {
        let partition = |code| OffsetFetchResponsePartitions::default().with_error_code(code);
        let topic = OffsetFetchResponseTopics::default().with_partitions(vec![partition(0), partition(3)]);
        let group = OffsetFetchResponseGroup::default().with_error_code(16).with_topics(vec![topic]);
        let response = OffsetFetchResponse::default().with_error_code(15).with_groups(vec![group]);
        assert_eq!(codes(&response), [15, 16, 0, 3]);
        assert_eq!(codes(&HeartbeatResponse::default().with_error_code(27)), [27]);
    }
}
