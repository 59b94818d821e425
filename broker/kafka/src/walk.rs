//! Checks a request's arrays before `kafka-protocol` decodes it.
//!
//! That crate reserves memory for as many elements as an array's count
//! says, before reading them: a 31-byte frame claiming two billion topics
//! would make it allocate hundreds of gigabytes and abort the process. So
//! each request with arrays is walked first, allocating nothing, along its
//! schema for the version: every array must hold the elements it counts.
//! Then decoding allocates no more than the frame's bytes can fill.

use kafka_protocol::messages::ApiKey;

/// A cursor over a request body; every read is checked.
struct Walk<'a> {
    rest: &'a [u8],
    flexible: bool,
}

type Step = Result<(), String>;

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Step {
        if self.rest.len() < n {
            return Err(format!("needs {n} more bytes, {} left", self.rest.len()));
        }
        self.rest = &self.rest[n..];
        Ok(())
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.rest.split_first() else { return Err("varint cut short".into()) };
            self.rest = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn varint(&mut self) -> Result<i64, String> {
        let z = self.uvarint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.rest.get(..2).ok_or("int16 cut short")?;
        let v = i16::from_be_bytes([b[0], b[1]]);
        self.skip(2)?;
        Ok(v)
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.rest.get(..4).ok_or("int32 cut short")?;
        let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.skip(4)?;
        Ok(v)
    }

    /// A compact length or count: the unsigned varint less one (-1 is
    /// null). A varint past `i64::MAX` is refused, not wrapped.
    fn compact_len(&mut self) -> Result<i64, String> {
        let n = self.uvarint()?;
        i64::try_from(n).map(|n| n - 1).map_err(|_| format!("a length or count of {n} is too large"))
    }

    /// A string, nullable string, bytes or nullable bytes: skipped.
    fn blob(&mut self) -> Step {
        let len = if self.flexible { self.compact_len()? } else { i64::from(self.i16()?) };
        if len > 0 { self.skip(len as usize) } else { Ok(()) }
    }

    /// Bytes with an int32 length (records in a non-flexible version).
    fn bytes32(&mut self) -> Step {
        if self.flexible {
            return self.blob();
        }
        let len = self.i32()?;
        if len > 0 { self.skip(len as usize) } else { Ok(()) }
    }

    /// An array whose elements `each` walks; its count must not exceed the
    /// bytes left (every element takes at least one).
    fn array(&mut self, mut each: impl FnMut(&mut Self) -> Step) -> Step {
        let n = if self.flexible { self.compact_len()? } else { i64::from(self.i32()?) };
        if n > self.rest.len() as i64 {
            return Err(format!("an array counts {n} elements in {} bytes", self.rest.len()));
        }
        for _ in 0..n.max(0) {
            each(self)?;
        }
        Ok(())
    }

    /// The tagged fields ending a struct in a flexible version.
    fn tags(&mut self) -> Step {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        if n > self.rest.len() as u64 {
            return Err(format!("{n} tagged fields in {} bytes", self.rest.len()));
        }
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(usize::try_from(size).map_err(|_| "tagged field too large")?)?;
        }
        Ok(())
    }
}

/// Walks the body of `api` at `version`; an error says what is wrong.
/// Returns how many bytes are left after the walked fields (none for a
/// well-formed request).
pub(crate) fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<usize, String> {
    let flexible = api.request_header_version(version) >= 2;
    let w = &mut Walk { rest: body, flexible };
    match api {
        ApiKey::Metadata => {
            w.array(|w| {
                if version >= 10 {
                    w.skip(16)?;
                }
                w.blob()?;
                w.tags()
            })?;
            let flags = [version >= 4, (8..=10).contains(&version), version >= 8];
            w.skip(flags.iter().filter(|f| **f).count())?;
            w.tags()?;
        }
        ApiKey::Produce => {
            w.blob()?; // transactional id
            w.skip(2 + 4)?; // acks, timeout
            w.array(|w| {
                w.blob()?;
                w.array(|w| {
                    w.skip(4)?;
                    w.bytes32()?;
                    w.tags()
                })?;
                w.tags()
            })?;
            w.tags()?;
        }
        ApiKey::Fetch => {
            w.skip(4 + 4 + 4 + 4 + 1)?; // replica, max wait, min bytes, max bytes, isolation
            if version >= 7 {
                w.skip(8)?; // session id and epoch
            }
            w.array(|w| {
                w.blob()?;
                w.array(|w| {
                    w.skip(4)?;
                    if version >= 9 {
                        w.skip(4)?;
                    }
                    w.skip(8)?;
                    if version >= 12 {
                        w.skip(4)?;
                    }
                    if version >= 5 {
                        w.skip(8)?;
                    }
                    w.skip(4)?;
                    w.tags()
                })?;
                w.tags()
            })?;
            if version >= 7 {
                w.array(|w| {
                    w.blob()?;
                    w.array(|w| w.skip(4))?;
                    w.tags()
                })?;
            }
            if version >= 11 {
                w.blob()?;
            }
            w.tags()?;
        }
        ApiKey::ListOffsets => {
            w.skip(4)?;
            if version >= 2 {
                w.skip(1)?;
            }
            w.array(|w| {
                w.blob()?;
                w.array(|w| {
                    w.skip(4)?;
                    if version >= 4 {
                        w.skip(4)?;
                    }
                    w.skip(8)?;
                    w.tags()
                })?;
                w.tags()
            })?;
            w.tags()?;
        }
        ApiKey::CreateTopics => {
            w.array(|w| {
                w.blob()?; // name
                w.skip(4 + 2)?; // partitions, replication factor
                w.array(|w| {
                    w.skip(4)?; // partition
                    w.array(|w| w.skip(4))?; // broker ids
                    w.tags()
                })?;
                w.array(|w| {
                    w.blob()?; // name
                    w.blob()?; // value
                    w.tags()
                })?;
                w.tags()
            })?;
            w.skip(4 + 1)?; // timeout, validate only
            w.tags()?;
        }
        ApiKey::DeleteTopics => {
            if version >= 6 {
                w.array(|w| {
                    w.blob()?; // name
                    w.skip(16)?; // topic id
                    w.tags()
                })?;
            } else {
                w.array(|w| w.blob())?;
            }
            w.skip(4)?; // timeout
            w.tags()?;
        }
        ApiKey::DescribeConfigs => {
            w.array(|w| {
                w.skip(1)?; // resource type
                w.blob()?; // resource name
                w.array(|w| w.blob())?; // configuration keys
                w.tags()
            })?;
            w.skip(1)?; // include synonyms
            if version >= 3 {
                w.skip(1)?; // include documentation
            }
            w.tags()?;
        }
        ApiKey::FindCoordinator => {
            if version <= 3 {
                w.blob()?;
            }
            if version >= 1 {
                w.skip(1)?;
            }
            if version >= 4 {
                w.array(|w| w.blob())?;
            }
            w.tags()?;
        }
        ApiKey::JoinGroup => {
            w.blob()?; // group id
            w.skip(4)?; // session timeout
            if version >= 1 {
                w.skip(4)?; // rebalance timeout
            }
            w.blob()?; // member id
            if version >= 5 {
                w.blob()?; // group instance id
            }
            w.blob()?; // protocol type
            w.array(|w| {
                w.blob()?;
                w.bytes32()?;
                w.tags()
            })?;
            if version >= 8 {
                w.blob()?; // reason
            }
            w.tags()?;
        }
        ApiKey::SyncGroup => {
            w.blob()?; // group id
            w.skip(4)?; // generation
            w.blob()?; // member id
            if version >= 3 {
                w.blob()?; // group instance id
            }
            if version >= 5 {
                w.blob()?; // protocol type
                w.blob()?; // protocol name
            }
            w.array(|w| {
                w.blob()?;
                w.bytes32()?;
                w.tags()
            })?;
            w.tags()?;
        }
        ApiKey::LeaveGroup => {
            w.blob()?; // group id
            if version <= 2 {
                w.blob()?; // member id
            } else {
                w.array(|w| {
                    w.blob()?; // member id
                    w.blob()?; // group instance id
                    if version >= 5 {
                        w.blob()?; // reason
                    }
                    w.tags()
                })?;
            }
            w.tags()?;
        }
        ApiKey::OffsetCommit => {
            w.blob()?; // group id
            w.skip(4)?; // generation or member epoch
            w.blob()?; // member id
            if version >= 7 {
                w.blob()?; // group instance id
            }
            if (2..=4).contains(&version) {
                w.skip(8)?; // retention time
            }
            w.array(|w| {
                w.blob()?;
                w.array(|w| {
                    w.skip(4 + 8)?; // partition, offset
                    if version >= 6 {
                        w.skip(4)?; // leader epoch
                    }
                    w.blob()?; // metadata
                    w.tags()
                })?;
                w.tags()
            })?;
            w.tags()?;
        }
        ApiKey::OffsetFetch => {
            let topics = |w: &mut Walk<'_>| {
                w.array(|w| {
                    w.blob()?;
                    w.array(|w| w.skip(4))?;
                    w.tags()
                })
            };
            if version <= 7 {
                w.blob()?; // group id
                topics(w)?;
            } else {
                w.array(|w| {
                    w.blob()?; // group id
                    if version >= 9 {
                        w.blob()?; // member id
                        w.skip(4)?; // member epoch
                    }
                    topics(w)?;
                    w.tags()
                })?;
            }
            if version >= 7 {
                w.skip(1)?; // require stable
            }
            w.tags()?;
        }
        ApiKey::ListGroups => {
            if version >= 4 {
                w.array(|w| w.blob())?;
            }
            if version >= 5 {
                w.array(|w| w.blob())?;
            }
            w.tags()?;
        }
        ApiKey::DescribeGroups => {
            w.array(|w| w.blob())?;
            if version >= 3 {
                w.skip(1)?;
            }
            w.tags()?;
        }
        ApiKey::DeleteGroups => {
            w.array(|w| w.blob())?;
            w.tags()?;
        }
        ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs => {
            let incremental = api == ApiKey::IncrementalAlterConfigs;
            w.array(|w| {
                w.skip(1)?; // resource type
                w.blob()?; // resource name
                w.array(|w| {
                    w.blob()?; // name
                    if incremental {
                        w.skip(1)?; // operation
                    }
                    w.blob()?; // value
                    w.tags()
                })?;
                w.tags()
            })?;
            w.skip(1)?; // validate only
            w.tags()?;
        }
        ApiKey::OffsetDelete => {
            w.blob()?; // group id
            w.array(|w| {
                w.blob()?; // topic
                w.array(|w| {
                    w.skip(4)?; // partition
                    w.tags()
                })?;
                w.tags()
            })?;
            w.tags()?;
        }
        // No arrays to check.
        _ => return Ok(0),
    }
    Ok(w.rest.len())
}

/// Walks a consumer's subscription (Kafka's consumer protocol, after its
/// int16 version) before it is decoded.
pub(crate) fn check_subscription(version: i16, body: &[u8]) -> Step {
    let w = &mut Walk { rest: body, flexible: false };
    w.array(|w| w.blob())?; // topics
    w.bytes32()?; // user data
    if version >= 1 {
        w.array(|w| {
            w.blob()?;
            w.array(|w| w.skip(4))
        })?;
    }
    Ok(())
}

/// Walks a consumer's assignment (Kafka's consumer protocol, after its
/// int16 version) before it is decoded.
pub(crate) fn check_assignment(body: &[u8]) -> Step {
    let w = &mut Walk { rest: body, flexible: false };
    w.array(|w| {
        w.blob()?;
        w.array(|w| w.skip(4))
    })?;
    w.bytes32()
}

/// Walks the records of one v2 batch (after its 61-byte header; once
/// decompressed if it was compressed): each record's header count must fit the record.
pub(crate) fn check_records(mut records: &[u8], count: usize) -> Step {
    for _ in 0..count {
        let mut w = Walk { rest: records, flexible: false };
        let len = w.varint()?;
        let len = usize::try_from(len).map_err(|_| format!("record length {len}"))?;
        let body = w.rest.get(..len).ok_or("a record runs past its batch")?;
        records = &w.rest[len..];
        let mut r = Walk { rest: body, flexible: false };
        r.skip(1)?; // attributes
        r.varint()?; // timestamp delta
        r.varint()?; // offset delta
        for _ in 0..2 {
            let n = r.varint()?; // key, value
            if n > 0 {
                r.skip(n as usize)?;
            }
        }
        let headers = r.varint()?;
        if headers < 0 || headers > r.rest.len() as i64 {
            return Err(format!("a record counts {headers} headers in {} bytes", r.rest.len()));
        }
    }
    Ok(())
}
