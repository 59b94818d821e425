//! Idempotent producers' sequence numbers, per partition: which batches a
//! partition already has, so a retried batch is answered with its original
//! offsets instead of being appended twice.
//!
//! Kept in memory under the partition's append lock, and rebuilt on open
//! from the producer ids and sequences stored in the last batches' headers.

use std::collections::{HashMap, VecDeque};

use crate::error::{Error, ProducerRefusal, Result};
use brooklet_storage::ProducerSeq;

/// Batches remembered per producer and partition: a producer has fewer
/// requests than this in flight per partition, so a retry is always of one
/// of them.
pub(super) const BATCHES_PER_PRODUCER: usize = 5;

/// Producers remembered per partition; the least recently active is
/// forgotten first. A forgotten producer's next batch is accepted as new,
/// once it has waited for earlier batches that never come.
pub(super) const PRODUCERS_PER_PARTITION: usize = 1024;

/// What to do with a producer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// New: append it.
    Append,
    /// Already appended at this base offset: answer with it.
    Duplicate(u64),
    /// Ahead of the producer's next sequence, `expected`: an earlier batch
    /// has not arrived yet (requests in flight together can overtake each
    /// other). It waits for it; if it never comes, [`gap`] refuses it.
    Ahead {
        /// The sequence the partition expects next from the producer.
        expected: u64,
        /// The partition knows nothing of the producer: its first batch may
        /// still be coming, or the producer was forgotten (see
        /// `PRODUCERS_PER_PARTITION`), whose batch is taken as new once
        /// the wait is over.
        unknown: bool,
    },
}

/// Refuses a batch whose earlier batches never arrived.
pub(super) fn gap(seq: ProducerSeq, expected: u64, topic: &str, partition: u32) -> Error {
    Error::ProducerRefused {
        refusal: ProducerRefusal::SequenceGap,
        reason: format!(
            "sequence gap for producer {} on {topic}/{partition}: expected sequence {expected}, got {}; \
             the batches in between never arrived",
            seq.producer_id, seq.base_sequence
        ),
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    base_sequence: u64,
    record_count: u32,
    base_offset: u64,
}

#[derive(Debug, Default)]
struct Producer {
    batches: VecDeque<Entry>,
    last_used: u64,
}

/// The producers of one partition.
#[derive(Debug, Default)]
pub(super) struct Producers {
    producers: HashMap<u64, Producer>,
    clock: u64,
}

impl Producers {
    /// Whether a batch of `record_count` records with `seq` is new, a
    /// duplicate, ahead of an earlier batch, or too old (an error).
    pub(super) fn check(
        &self,
        seq: ProducerSeq,
        record_count: u32,
        topic: &str,
        partition: u32,
    ) -> Result<Decision> {
        // A producer numbers each partition's records from 0.
        let unknown = || match seq.base_sequence {
            0 => Decision::Append,
            _ => Decision::Ahead { expected: 0, unknown: true },
        };
        let Some(p) = self.producers.get(&seq.producer_id) else {
            return Ok(unknown());
        };
        let Some(last) = p.batches.back() else {
            return Ok(unknown());
        };
        let expected = last.base_sequence + u64::from(last.record_count);
        if seq.base_sequence == expected {
            return Ok(Decision::Append);
        }
        // A retried batch matches the batches that hold exactly its
        // sequences: one, or several when a large batch was stored in parts
        // (after a restart each part is remembered on its own).
        if let Some(start) = p.batches.iter().position(|e| e.base_sequence == seq.base_sequence) {
            let first = p.batches[start];
            let (mut next_seq, mut next_offset) = (first.base_sequence, first.base_offset);
            for e in p.batches.iter().skip(start) {
                if e.base_sequence != next_seq || e.base_offset != next_offset {
                    break;
                }
                next_seq += u64::from(e.record_count);
                next_offset += u64::from(e.record_count);
                if next_seq == seq.base_sequence + u64::from(record_count) {
                    return Ok(Decision::Duplicate(first.base_offset));
                }
            }
        }
        if seq.base_sequence > expected {
            return Ok(Decision::Ahead { expected, unknown: false });
        }
        Err(Error::ProducerRefused {
            refusal: ProducerRefusal::StaleSequence,
            reason: format!(
                "sequence {} of producer {} on {topic}/{partition} is older than the last {BATCHES_PER_PRODUCER} \
                 batches kept, or does not match the batch appended with it",
                seq.base_sequence, seq.producer_id
            ),
        })
    }

    /// The sequence expected next from `producer_id`, if it is known.
    pub(super) fn next_sequence(&self, producer_id: u64) -> Option<u64> {
        let last = self.producers.get(&producer_id)?.batches.back()?;
        Some(last.base_sequence + u64::from(last.record_count))
    }

    /// Remembers an appended batch, and forgets all but the producer's last
    /// `BATCHES_PER_PRODUCER`.
    pub(super) fn record(&mut self, seq: ProducerSeq, record_count: u32, base_offset: u64) {
        let p = self.remember(seq, record_count, base_offset);
        while p.batches.len() > BATCHES_PER_PRODUCER {
            p.batches.pop_front();
        }
    }

    /// Remembers a batch found in storage on open, keeping every one: a
    /// batch appended in parts is found part by part, and a retry of it
    /// must find them all. The producer's next `record` trims its batches;
    /// by then it has moved past any retry.
    pub(super) fn recover(&mut self, seq: ProducerSeq, record_count: u32, base_offset: u64) {
        self.remember(seq, record_count, base_offset);
    }

    fn remember(&mut self, seq: ProducerSeq, record_count: u32, base_offset: u64) -> &mut Producer {
        self.clock += 1;
        let full =
            !self.producers.contains_key(&seq.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION;
        if let Some(oldest) =
            self.producers.iter().filter(|_| full).min_by_key(|(_, p)| p.last_used).map(|(id, _)| *id)
        {
            self.producers.remove(&oldest);
        }
        let p = self.producers.entry(seq.producer_id).or_default();
        p.last_used = self.clock;
        p.batches.push_back(Entry { base_sequence: seq.base_sequence, record_count, base_offset });
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(base_sequence: u64) -> ProducerSeq {
        ProducerSeq { producer_id: 7, base_sequence }
    }

    #[test]
    fn retries_are_recognised_and_gaps_refused() {
        let mut p = Producers::default();
        assert_eq!(p.check(seq(3), 2, "t", 0).unwrap(), Decision::Ahead { expected: 0, unknown: true });
        assert_eq!(p.check(seq(0), 3, "t", 0).unwrap(), Decision::Append);
        p.record(seq(0), 3, 100);
        assert_eq!(p.check(seq(3), 2, "t", 0).unwrap(), Decision::Append);
        p.record(seq(3), 2, 103);
        assert_eq!(p.check(seq(0), 3, "t", 0).unwrap(), Decision::Duplicate(100));
        assert_eq!(p.check(seq(3), 2, "t", 0).unwrap(), Decision::Duplicate(103));
        assert_eq!(p.check(seq(9), 1, "t", 0).unwrap(), Decision::Ahead { expected: 5, unknown: false });
        assert_eq!((p.next_sequence(7), p.next_sequence(8)), (Some(5), None));
        let gap = gap(seq(9), 5, "t", 0).to_string();
        assert!(gap.contains("expected sequence 5, got 9"), "{gap}");
        assert!(p.check(seq(1), 1, "t", 0).is_err(), "a sequence inside an appended batch is not a retry");
        // A batch stored in parts (remembered part by part after a restart)
        // is still recognised whole.
        let mut parts = Producers::default();
        parts.record(seq(0), 4, 10);
        parts.record(seq(4), 3, 14);
        assert_eq!(parts.check(seq(0), 7, "t", 0).unwrap(), Decision::Duplicate(10));
        assert_eq!(parts.check(seq(4), 3, "t", 0).unwrap(), Decision::Duplicate(14));
        assert!(parts.check(seq(0), 5, "t", 0).is_err());
        // Only the last few batches are kept.
        for i in 0..BATCHES_PER_PRODUCER as u64 {
            p.record(seq(5 + i), 1, 105 + i);
        }
        assert!(p.check(seq(0), 3, "t", 0).is_err());
    }

    #[test]
    fn a_batch_recovered_in_many_parts_is_recognised_until_the_producer_moves_on() {
        let mut p = Producers::default();
        let parts = 3 * BATCHES_PER_PRODUCER as u64;
        for i in 0..parts {
            p.recover(seq(2 * i), 2, 50 + 2 * i);
        }
        assert_eq!(p.check(seq(0), 2 * parts as u32, "t", 0).unwrap(), Decision::Duplicate(50));
        assert_eq!(p.check(seq(2 * parts), 1, "t", 0).unwrap(), Decision::Append);
        p.record(seq(2 * parts), 1, 50 + 2 * parts);
        assert!(p.check(seq(0), 2 * parts as u32, "t", 0).is_err(), "trimmed once the producer moved on");
    }
}
