//! Every sled key the broker writes is built here. Integers are big-endian so
//! that sled's byte order is numeric order: a partition's batches scan in
//! offset order, and one partition's keys are contiguous.

/// Key of a stored batch in its topic's tree: partition, then base offset.
pub(super) fn batch(partition: u32, base_offset: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&partition.to_be_bytes());
    key[4..].copy_from_slice(&base_offset.to_be_bytes());
    key
}

/// The first key after every batch of `partition`.
pub(super) fn partition_end(partition: u32) -> Vec<u8> {
    // Partition numbers are below the configured maximum (at most 1 << 20), so
    // `partition + 1` cannot overflow; the prefix bytes alone bound the range.
    (u64::from(partition) + 1).to_be_bytes()[4..].to_vec()
}

/// Decodes a batch key into (partition, base offset).
pub(super) fn parse_batch(key: &[u8]) -> Option<(u32, u64)> {
    let partition = u32::from_be_bytes(key.get(..4)?.try_into().ok()?);
    let base = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    Some((partition, base))
}

/// Key of a time-index entry: partition, then the running maximum
/// timestamp (never negative, so its unsigned big-endian bytes sort as
/// numbers).
pub(super) fn time_index(partition: u32, max_timestamp_ms: i64) -> [u8; 12] {
    batch(partition, max_timestamp_ms.max(0) as u64)
}

/// Decodes a time-index key into (partition, running max timestamp).
pub(super) fn parse_time_index(key: &[u8]) -> Option<(u32, i64)> {
    parse_batch(key).map(|(p, ts)| (p, i64::try_from(ts).unwrap_or(i64::MAX)))
}

/// Name of the sled tree holding one topic's sparse time index.
pub(super) fn time_index_tree(topic_id: &str) -> Vec<u8> {
    format!("tindex/{topic_id}").into_bytes()
}

/// Name of the sled tree holding one topic's batches: by topic id, so a topic
/// re-created under the same name starts from an empty tree.
pub(super) fn topic_tree(topic_id: &str) -> Vec<u8> {
    format!("topic/{topic_id}").into_bytes()
}

/// The topic id of a topic's batch or time-index tree name, or `None` for
/// other trees.
pub(super) fn parse_topic_tree(name: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(name).ok()?;
    name.strip_prefix("topic/").or_else(|| name.strip_prefix("tindex/"))
}

/// Key of a partition's persisted log start: topic id, then partition.
pub(super) fn log_start(topic_id: &str, partition: u32) -> Vec<u8> {
    let mut key = log_start_prefix(topic_id);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// Prefix of every persisted log start of a topic.
pub(super) fn log_start_prefix(topic_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic_id.len() + 4);
    push_short(&mut key, topic_id);
    key
}

/// Prefix of all committed offsets of `group` (length-prefixed, so group
/// "a" never matches group "ab").
pub(super) fn group_prefix(group: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + group.len());
    push_short(&mut key, group);
    key
}

/// Prefix of a group's committed offsets for one topic.
pub(super) fn group_topic_prefix(group: &str, topic: &str) -> Vec<u8> {
    let mut key = group_prefix(group);
    push_short(&mut key, topic);
    key
}

/// Key of a committed offset: group, topic, partition.
pub(super) fn committed_offset(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut key = group_topic_prefix(group, topic);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// Decodes a committed-offset key into (group, topic, partition).
pub(super) fn parse_committed_offset(key: &[u8]) -> Option<(String, String, u32)> {
    let (group, rest) = take_short(key)?;
    let (topic, rest) = take_short(rest)?;
    let partition = u32::from_be_bytes(rest.try_into().ok()?);
    Some((group, topic, partition))
}

/// Appends a string of at most 255 bytes with a one-byte length. Group ids
/// and topic names are validated to fit before they reach storage.
fn push_short(key: &mut Vec<u8>, s: &str) {
    let len = u8::try_from(s.len()).unwrap_or(u8::MAX);
    key.push(len);
    key.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn take_short(bytes: &[u8]) -> Option<(String, &[u8])> {
    let len = usize::from(*bytes.first()?);
    let s = bytes.get(1..1 + len)?;
    Some((String::from_utf8(s.to_vec()).ok()?, &bytes[1 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keys_sort_by_partition_then_offset() {
        let mut keys = [batch(1, 5), batch(0, 300), batch(1, 2), batch(0, 1 << 40)];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_batch(k).unwrap()).collect();
        assert_eq!(parsed, vec![(0, 300), (0, 1 << 40), (1, 2), (1, 5)]);
        assert!(batch(0, u64::MAX).as_slice() < partition_end(0).as_slice());
        assert!(batch(1, 0).as_slice() >= partition_end(0).as_slice());
    }

    #[test]
    fn committed_offset_keys_round_trip_and_do_not_alias() {
        let key = committed_offset("g", "orders", 7);
        assert_eq!(parse_committed_offset(&key), Some(("g".into(), "orders".into(), 7)));
        assert!(!key.starts_with(&group_prefix("g2")));
        assert!(key.starts_with(&group_topic_prefix("g", "orders")));
        assert!(!key.starts_with(&group_topic_prefix("g", "order")));
    }
}
