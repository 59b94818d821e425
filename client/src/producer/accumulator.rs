//! The producer's batching bookkeeping: picks each record's partition, groups
//! records into per-partition batches, and decides which batches are ready to
//! send and how they pack into requests. Pure state: no I/O, no clock of its
//! own (callers pass `now`), so it is tested without a broker or a runtime.
//!
//! Invariant: a partition has at most the `drain` caller's limit of batches
//! in flight, and only the oldest unsent batch of a partition is ever taken,
//! so a partition's batches leave in the order their records were appended.
//! (With more than one in flight they may still reach the broker out of
//! order; the producer allows that only when the broker can restore the
//! order from the batches' sequence numbers.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use brooklet_proto::partitioner::partition_for_key;
use brooklet_proto::v1;
use futures::FutureExt as _;
use futures::future::Shared;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::record::{Durability, ProducerRecord};

/// How the broker answered a batch: every record of the batch learns its
/// outcome from this one value, so a record costs no channel of its own.
#[derive(Debug, Clone)]
pub(crate) struct BatchAck {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    /// The first record's offset; `None` when not waited for (acks none).
    pub(crate) base_offset: Option<u64>,
    pub(crate) durability: Durability,
}

/// The batch's outcome as its records await it. The sender is dropped
/// unanswered only when the producer's task stopped with its runtime.
pub(crate) type Answer = Shared<oneshot::Receiver<Result<BatchAck>>>;

/// Where an appended record's outcome will come from: its batch's answer
/// and its place in the batch.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) answer: Answer,
    pub(crate) index: u32,
    /// Whether the sender should look again: a batch was started (it has a
    /// new deadline) or filled.
    pub(crate) wake: bool,
}

/// When a batch is complete.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a batch waits for more records before it is sent.
    pub(crate) linger: Duration,
    /// A batch (and a request) is sent once it holds this many bytes.
    pub(crate) max_batch_bytes: usize,
}

/// Records bound for one partition, sent as one unit.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) partition: u32,
    /// The sequence number of its first record, which identifies the batch
    /// and orders it for `flush`.
    first_seq: u64,
    created: Instant,
    bytes: usize,
    /// Records in the batch (they travel in `records`, taken on the way).
    pub(crate) len: usize,
    pub(crate) records: Vec<v1::ProduceRecord>,
    /// Where the outcome goes, once; `None` after it was answered.
    pub(crate) reply: Option<oneshot::Sender<Result<BatchAck>>>,
    /// Cloned for each record that joins.
    answer: Answer,
    /// The buffer space the records hold; released when the batch is dropped,
    /// which is after its answer is sent.
    permit: Option<OwnedSemaphorePermit>,
}

impl Batch {
    /// The key [`Accumulator::complete`] needs once the batch is done.
    pub(crate) fn key(&self) -> BatchKey {
        BatchKey { partition: self.partition, first_seq: self.first_seq, len: self.len }
    }

    /// Whether a [`Delivery`](super::Delivery) still awaits the batch's
    /// answer: if not, a failure would reach nobody.
    pub(crate) fn is_awaited(&self) -> bool {
        // The batch holds one clone of the answer itself.
        self.answer.strong_count().is_some_and(|n| n > 1)
    }
}

/// Identifies a batch sent, so its completion can be recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchKey {
    partition: u32,
    first_seq: u64,
    len: usize,
}

/// Batches of one topic, taken together so they go out as one request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) topic: String,
    pub(crate) batches: Vec<Batch>,
}

/// What the sender should do now.
#[derive(Debug)]
pub(crate) struct Drained {
    /// Requests to send.
    pub(crate) requests: Vec<Request>,
    /// When the next unsent batch's linger expires, if one is waiting for it.
    pub(crate) next_deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    /// Full batches waiting to be sent, oldest first.
    sealed: VecDeque<Batch>,
    /// The batch records join; younger than every sealed one.
    open: Option<Batch>,
    /// Batches sent and not yet completed.
    in_flight: usize,
}

impl PartitionQueue {
    /// The batch that goes next, if any.
    fn front(&self) -> Option<&Batch> {
        self.sealed.front().or(self.open.as_ref())
    }

    fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open.is_none()
    }
}

#[derive(Debug, Default)]
struct TopicQueues {
    /// The topic's partition count as of the latest append.
    partition_count: u32,
    /// The partition keyless records currently go to (Kafka's sticky
    /// partitioner): filling one batch at a time makes bigger batches than
    /// spreading records round-robin.
    sticky: Option<u32>,
    partitions: BTreeMap<u32, PartitionQueue>,
}

impl TopicQueues {
    /// The sticky partition, choosing one if there is none or the topic
    /// shrank below it.
    fn sticky(&mut self) -> u32 {
        match self.sticky {
            Some(p) if p < self.partition_count => p,
            _ => {
                let p = fastrand::u32(0..self.partition_count);
                self.sticky = Some(p);
                p
            }
        }
    }
}

/// A random partition other than `current`, when there is another.
fn other_partition(current: u32, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    let p = fastrand::u32(0..partitions - 1);
    if p >= current { p + 1 } else { p }
}

/// Every unsent and in-flight batch of a producer.
#[derive(Debug)]
pub(crate) struct Accumulator {
    limits: Limits,
    topics: BTreeMap<String, TopicQueues>,
    /// The sequence number the next appended record gets.
    next_seq: u64,
    /// The first sequence number of every batch not yet completed.
    outstanding: BTreeSet<u64>,
    /// Records appended and not yet completed: buffered or in flight.
    pending_records: usize,
    /// Batches starting below this sequence number go out without waiting
    /// for their linger: a flush asked for them.
    flush_until: u64,
    closed: bool,
    /// The producer gave up on its records (see [`abandon`](Self::abandon)).
    abandoned: bool,
}

impl Accumulator {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            topics: BTreeMap::new(),
            next_seq: 0,
            outstanding: BTreeSet::new(),
            pending_records: 0,
            flush_until: 0,
            closed: false,
            abandoned: false,
        }
    }

    /// Adds `record` to its partition's open batch, or to a new one, and
    /// says where its outcome will come from.
    ///
    /// `partitions` is the topic's partition count (at least 1); an explicit
    /// partition must already be checked against it. `now` is asked only
    /// when the record starts a batch.
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partitions: u32,
        record: ProducerRecord,
        permit: OwnedSemaphorePermit,
        now: impl FnOnce() -> Instant,
    ) -> Result<Slot> {
        if self.closed {
            return Err(Error::Closed);
        }
        let max = self.limits.max_batch_bytes;
        let size = record.size();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending_records += 1;
        // Looking up before inserting spares a String allocation per record.
        let queues = match self.topics.get_mut(topic) {
            Some(queues) => queues,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        queues.partition_count = partitions;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let p = queues.sticky();
                let open = queues.partitions.get(&p).and_then(|q| q.open.as_ref());
                if open.is_some_and(|b| b.bytes + size > max) {
                    // Kafka's rule: a keyless record that would start a new
                    // batch on the sticky partition moves to another one.
                    let next = other_partition(p, partitions);
                    queues.sticky = Some(next);
                    next
                } else {
                    p
                }
            }
        };
        let queue = queues.partitions.entry(partition).or_default();
        if queue.open.as_ref().is_some_and(|b| b.bytes + size > max) {
            queue.sealed.extend(queue.open.take());
        }
        let mut started = false;
        let outstanding = &mut self.outstanding;
        let batch = queue.open.get_or_insert_with(|| {
            started = true;
            outstanding.insert(seq);
            let (reply, answer) = oneshot::channel();
            Batch {
                partition,
                first_seq: seq,
                created: now(),
                bytes: 0,
                len: 0,
                // Room for a full batch of records like this one, up to 64
                // (an open batch per partition: the cap bounds what many
                // barely used batches reserve), so it is copied less often
                // as it grows.
                records: Vec::with_capacity((max / size.max(1)).clamp(1, 64)),
                reply: Some(reply),
                answer: answer.shared(),
                permit: None,
            }
        });
        let index = batch.len as u32;
        let answer = batch.answer.clone();
        batch.bytes += size;
        batch.len += 1;
        batch.records.push(record.into_proto(partition));
        match &mut batch.permit {
            Some(held) => held.merge(permit),
            None => batch.permit = Some(permit),
        }
        let full = batch.bytes >= max;
        if full {
            queue.sealed.extend(queue.open.take());
            if queues.sticky == Some(partition) {
                queues.sticky = Some(other_partition(partition, partitions));
            }
        }
        Ok(Slot { answer, index, wake: started || full })
    }

    /// Takes the batches ready to send, packed into at most `capacity`
    /// requests of one topic each and about `max_batch_bytes` each (a larger
    /// batch goes alone).
    ///
    /// A batch is ready when it is full, its linger has passed, a flush asked
    /// for it, or the producer is closing; and only if its partition has
    /// fewer than `per_partition` batches in flight. A partition gives at
    /// most one batch per call.
    pub(crate) fn drain(&mut self, now: Instant, mut capacity: usize, per_partition: usize) -> Drained {
        let Limits { linger, max_batch_bytes } = self.limits;
        let mut requests = Vec::new();
        let mut next_deadline: Option<Instant> = None;
        'topics: for (topic, queues) in &mut self.topics {
            let mut request: Option<(Request, usize)> = None;
            for (&partition, queue) in &mut queues.partitions {
                if queue.in_flight >= per_partition {
                    continue;
                }
                let Some(front) = queue.front() else {
                    continue;
                };
                let deadline = front.created + linger;
                let ready = self.closed
                    || !queue.sealed.is_empty()
                    || front.first_seq < self.flush_until
                    || now >= deadline;
                if !ready {
                    next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                    continue;
                }
                let front_bytes = front.bytes;
                if request.as_ref().is_some_and(|(_, bytes)| bytes + front_bytes > max_batch_bytes) {
                    requests.extend(request.take().map(|(r, _)| r));
                }
                if request.is_none() {
                    if capacity == 0 {
                        break 'topics;
                    }
                    capacity -= 1;
                }
                let (request, bytes) = request.get_or_insert_with(|| {
                    let request = Request { topic: topic.clone(), batches: Vec::new() };
                    (request, 0)
                });
                let Some(batch) = queue.sealed.pop_front().or_else(|| queue.open.take()) else {
                    continue;
                };
                queue.in_flight += 1;
                *bytes += batch.bytes;
                request.batches.push(batch);
                if queues.sticky == Some(partition) {
                    // The sticky batch is leaving: the next keyless record
                    // starts a batch elsewhere.
                    queues.sticky = Some(other_partition(partition, queues.partition_count));
                }
            }
            requests.extend(request.map(|(r, _)| r));
        }
        // Once out of capacity, the next completion wakes the sender; a
        // deadline that has already passed would only make it spin.
        if capacity == 0 {
            next_deadline = None;
        }
        Drained { requests, next_deadline }
    }

    /// Records that the batches identified by `keys` (from [`Batch::key`])
    /// of `topic` were acknowledged or failed, so their partitions may send
    /// again.
    pub(crate) fn complete(&mut self, topic: &str, keys: &[BatchKey]) {
        for key in keys {
            if self.outstanding.remove(&key.first_seq) {
                self.pending_records -= key.len;
            }
        }
        let Some(queues) = self.topics.get_mut(topic) else {
            return;
        };
        for &BatchKey { partition, .. } in keys {
            if let Some(queue) = queues.partitions.get_mut(&partition) {
                queue.in_flight = queue.in_flight.saturating_sub(1);
                if queue.is_empty() && queue.in_flight == 0 {
                    queues.partitions.remove(&partition);
                }
            }
        }
    }

    /// Makes every batch appended so far ready, and returns the sequence
    /// number [`low_watermark`](Self::low_watermark) must reach for all of
    /// them to be done.
    pub(crate) fn request_flush(&mut self) -> u64 {
        self.flush_until = self.next_seq;
        self.next_seq
    }

    /// Every record with a lower sequence number is done (acknowledged or
    /// failed).
    pub(crate) fn low_watermark(&self) -> u64 {
        self.outstanding.first().copied().unwrap_or(self.next_seq)
    }

    /// Refuses further records and makes every batch ready.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Whether the producer is closed and has nothing left to send or await.
    pub(crate) fn is_finished(&self) -> bool {
        self.closed && self.outstanding.is_empty()
    }

    /// Records appended and not yet acknowledged or failed: buffered, or in
    /// flight.
    pub(crate) fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Gives up on every record not yet completed, unless the producer is
    /// already finished: refuses further records, drops the unsent batches
    /// (their deliveries fail with [`Error::Closed`]) and forgets the ones in
    /// flight (whoever holds them drops them unanswered). Returns how many
    /// records were given up, so the caller can report them; afterwards the
    /// producer counts as finished.
    pub(crate) fn abandon(&mut self) -> usize {
        if self.is_finished() {
            return 0;
        }
        let lost = self.pending_records;
        self.closed = true;
        self.abandoned = true;
        self.topics.clear();
        self.outstanding.clear();
        self.pending_records = 0;
        lost
    }

    /// Whether [`abandon`](Self::abandon) gave up on records.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::*;

    const LINGER: Duration = Duration::from_millis(5);

    struct Fixture {
        acc: Accumulator,
        buffer: Arc<Semaphore>,
        now: Instant,
    }

    impl Fixture {
        fn new(max_batch_bytes: usize) -> Self {
            Self {
                acc: Accumulator::new(Limits { linger: LINGER, max_batch_bytes }),
                buffer: Arc::new(Semaphore::new(1 << 20)),
                now: Instant::now(),
            }
        }

        fn append(&mut self, topic: &str, partitions: u32, record: ProducerRecord) -> Result<bool> {
            let permits = u32::try_from(record.size()).expect("small record");
            let permit =
                Arc::clone(&self.buffer).try_acquire_many_owned(permits).expect("the test buffer has room");
            self.acc.append(topic, partitions, record, permit, || self.now).map(|slot| slot.wake)
        }

        fn drain(&mut self) -> Drained {
            self.acc.drain(self.now, 8, 1)
        }
    }

    /// Partition and record count of each batch in each request.
    fn shape(drained: &Drained) -> Vec<(String, Vec<(u32, usize)>)> {
        drained
            .requests
            .iter()
            .map(|r| {
                let batches = r.batches.iter().map(|b| (b.partition, b.records.len())).collect();
                (r.topic.clone(), batches)
            })
            .collect()
    }

    fn complete(acc: &mut Accumulator, drained: &Drained) {
        for request in &drained.requests {
            let keys: Vec<_> = request.batches.iter().map(Batch::key).collect();
            acc.complete(&request.topic, &keys);
        }
    }

    fn keyed(key: &'static str) -> ProducerRecord {
        ProducerRecord::new("v").key(key)
    }

    #[test]
    fn explicit_partition_wins_then_key_hash() {
        let mut f = Fixture::new(1 << 20);
        f.append("t", 8, keyed("order-42").partition(5)).expect("append");
        f.append("t", 8, keyed("order-42")).expect("append");
        f.now += LINGER;
        let drained = f.drain();
        let expected_key_partition = partition_for_key(b"order-42", 8);
        let mut partitions: Vec<_> = drained.requests[0].batches.iter().map(|b| b.partition).collect();
        partitions.sort_unstable();
        let mut expected = vec![5, expected_key_partition];
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(partitions, expected);
        assert!(
            drained.requests[0].batches.iter().flat_map(|b| &b.records).all(|r| r.partition.is_some()),
            "requests always name the partition"
        );
    }

    #[test]
    fn a_batch_waits_for_its_linger_then_goes() {
        let mut f = Fixture::new(1 << 20);
        assert!(f.append("t", 1, keyed("a")).expect("append"), "a new batch wakes the sender");
        assert!(!f.append("t", 1, keyed("b")).expect("append"), "joining a batch does not");
        let drained = f.drain();
        assert!(drained.requests.is_empty());
        assert_eq!(drained.next_deadline, Some(f.now + LINGER));
        f.now += LINGER;
        let drained = f.drain();
        assert_eq!(shape(&drained), [("t".to_owned(), vec![(0, 2)])]);
        assert_eq!(drained.next_deadline, None);
    }

    #[test]
    fn a_full_batch_goes_at_once_and_the_next_record_starts_another() {
        let size = ProducerRecord::new("v").key("a").size();
        let mut f = Fixture::new(size * 3);
        for _ in 0..3 {
            f.append("t", 1, keyed("a")).expect("append");
        }
        f.append("t", 1, keyed("a")).expect("append");
        let drained = f.drain();
        assert_eq!(shape(&drained), [("t".to_owned(), vec![(0, 3)])]);
        assert_eq!(drained.next_deadline, None, "the second batch waits for the first, not for a timer");
        complete(&mut f.acc, &drained);
        f.now += LINGER;
        assert_eq!(shape(&f.drain()), [("t".to_owned(), vec![(0, 1)])]);
    }

    #[test]
    fn a_record_larger_than_a_batch_goes_alone() {
        let mut f = Fixture::new(64);
        f.append("t", 1, keyed("a")).expect("append");
        f.append("t", 1, ProducerRecord::new(vec![0u8; 500]).partition(0)).expect("append");
        let drained = f.drain();
        assert_eq!(shape(&drained), [("t".to_owned(), vec![(0, 1)])]);
        complete(&mut f.acc, &drained);
        assert_eq!(shape(&f.drain()), [("t".to_owned(), vec![(0, 1)])]);
    }

    /// `n` records to partition 0 of `t`, each a full batch of its own.
    fn single_record_batches(n: usize) -> Fixture {
        let size = ProducerRecord::new("v").partition(0).size();
        let mut f = Fixture::new(size);
        for _ in 0..n {
            f.append("t", 1, ProducerRecord::new("v").partition(0)).expect("append");
        }
        f
    }

    #[test]
    fn one_batch_in_flight_per_partition_keeps_order() {
        let mut f = single_record_batches(3);
        let first = f.drain();
        assert_eq!(shape(&first), [("t".to_owned(), vec![(0, 1)])]);
        assert!(f.drain().requests.is_empty(), "partition 0 is busy");
        complete(&mut f.acc, &first);
        let second = f.drain();
        assert_eq!(shape(&second), [("t".to_owned(), vec![(0, 1)])]);
        assert!(second.requests[0].batches[0].first_seq > first.requests[0].batches[0].first_seq);
    }

    #[test]
    fn batches_of_a_partition_leave_in_order_up_to_the_in_flight_limit() {
        let mut f = single_record_batches(4);
        let sent: Vec<Drained> = (0..3).map(|_| f.acc.drain(f.now, 8, 2)).collect();
        let firsts: Vec<u64> =
            sent.iter().flat_map(|d| &d.requests).map(|r| r.batches[0].first_seq).collect();
        assert_eq!(firsts, [0, 1], "two in flight, the oldest first; the third waits");
        complete(&mut f.acc, &sent[0]);
        let third = f.acc.drain(f.now, 8, 2);
        assert_eq!(third.requests[0].batches[0].first_seq, 2);
        assert!(f.acc.drain(f.now, 8, 2).requests.is_empty(), "two in flight again");
        complete(&mut f.acc, &sent[1]);
        complete(&mut f.acc, &third);
        let fourth = f.acc.drain(f.now, 8, 2);
        assert_eq!(fourth.requests[0].batches[0].first_seq, 3);
        complete(&mut f.acc, &fourth);
        assert!(f.acc.topics["t"].partitions.is_empty(), "a partition with nothing left is forgotten");
    }

    #[test]
    fn ready_batches_of_a_topic_share_a_request_up_to_the_size_limit() {
        let size = ProducerRecord::new("v").partition(0).size();
        let mut f = Fixture::new(size * 2);
        for p in 0..4 {
            f.append("t", 4, ProducerRecord::new("v").partition(p)).expect("append");
        }
        f.append("u", 1, ProducerRecord::new("v").partition(0)).expect("append");
        f.now += LINGER;
        let drained = f.drain();
        assert_eq!(
            shape(&drained),
            [
                ("t".to_owned(), vec![(0, 1), (1, 1)]),
                ("t".to_owned(), vec![(2, 1), (3, 1)]),
                ("u".to_owned(), vec![(0, 1)]),
            ]
        );
    }

    #[test]
    fn capacity_bounds_the_requests_taken() {
        let size = ProducerRecord::new("v").partition(0).size();
        let mut f = Fixture::new(size);
        for p in 0..4 {
            f.append("t", 4, ProducerRecord::new("v").partition(p)).expect("append");
        }
        let drained = f.acc.drain(f.now, 3, 1);
        assert_eq!(drained.requests.len(), 3);
        assert_eq!(drained.next_deadline, None);
        let rest = f.acc.drain(f.now, 3, 1);
        assert_eq!(shape(&rest), [("t".to_owned(), vec![(3, 1)])]);
    }

    #[test]
    fn keyless_records_stick_to_one_partition_until_its_batch_leaves() {
        let size = ProducerRecord::new("v").size();
        let mut f = Fixture::new(size * 10);
        for _ in 0..5 {
            f.append("t", 4, ProducerRecord::new("v")).expect("append");
        }
        f.now += LINGER;
        let drained = f.drain();
        let batches = &drained.requests[0].batches;
        assert_eq!(batches.len(), 1, "all keyless records share one batch");
        assert_eq!(batches[0].records.len(), 5);
        let first = batches[0].partition;
        f.append("t", 4, ProducerRecord::new("v")).expect("append");
        let next = f.acc.topics["t"].sticky;
        assert!(next.is_some_and(|p| p != first && p < 4), "{next:?} after {first}");
    }

    #[test]
    fn a_full_sticky_batch_moves_keyless_records_elsewhere() {
        let size = ProducerRecord::new("v").size();
        let mut f = Fixture::new(size * 2);
        for _ in 0..4 {
            f.append("t", 2, ProducerRecord::new("v")).expect("append");
        }
        let drained = f.drain();
        let partitions: Vec<_> =
            drained.requests.iter().flat_map(|r| &r.batches).map(|b| b.partition).collect();
        assert_eq!(partitions.len(), 2, "two full batches: {:?}", shape(&drained));
        assert_ne!(partitions[0], partitions[1]);
    }

    #[test]
    fn flush_readies_everything_appended_before_it() {
        let mut f = Fixture::new(1 << 20);
        f.append("t", 2, ProducerRecord::new("v").partition(0)).expect("append");
        let target = f.acc.request_flush();
        f.append("t", 2, ProducerRecord::new("v").partition(1)).expect("append");
        let drained = f.drain();
        assert_eq!(shape(&drained), [("t".to_owned(), vec![(0, 1)])]);
        assert!(f.acc.low_watermark() < target);
        complete(&mut f.acc, &drained);
        assert!(f.acc.low_watermark() >= target);
    }

    #[test]
    fn closing_readies_everything_and_refuses_new_records() {
        let mut f = Fixture::new(1 << 20);
        f.append("t", 1, keyed("a")).expect("append");
        f.acc.close();
        assert!(matches!(f.append("t", 1, keyed("b")), Err(Error::Closed)));
        assert!(!f.acc.is_finished());
        let drained = f.drain();
        assert_eq!(shape(&drained), [("t".to_owned(), vec![(0, 1)])]);
        complete(&mut f.acc, &drained);
        assert!(f.acc.is_finished());
    }

    #[test]
    fn pending_records_count_until_their_batch_completes() {
        let size = ProducerRecord::new("v").partition(0).size();
        let mut f = Fixture::new(size * 2);
        for p in [0, 0, 1] {
            f.append("t", 2, ProducerRecord::new("v").partition(p)).expect("append");
        }
        assert_eq!(f.acc.pending_records(), 3);
        let full = f.drain();
        assert_eq!(shape(&full), [("t".to_owned(), vec![(0, 2)])]);
        assert_eq!(f.acc.pending_records(), 3, "in flight is still pending");
        complete(&mut f.acc, &full);
        assert_eq!(f.acc.pending_records(), 1);
        complete(&mut f.acc, &full);
        assert_eq!(f.acc.pending_records(), 1, "a batch completes once");
    }

    #[test]
    fn abandoning_counts_unsent_and_in_flight_records_and_drops_the_unsent() {
        let size = ProducerRecord::new("v").partition(0).size();
        let mut f = Fixture::new(size * 2);
        let before = f.buffer.available_permits();
        for p in [0, 0, 1] {
            f.append("t", 2, ProducerRecord::new("v").partition(p)).expect("append");
        }
        let in_flight = f.drain();
        assert_eq!(f.acc.abandon(), 3);
        assert!(f.acc.is_abandoned() && f.acc.is_finished());
        assert!(matches!(f.append("t", 2, ProducerRecord::new("v")), Err(Error::Closed)));
        assert_eq!(f.acc.abandon(), 0, "counted once");
        complete(&mut f.acc, &in_flight);
        assert_eq!(f.acc.pending_records(), 0);
        drop(in_flight);
        assert_eq!(f.buffer.available_permits(), before, "the unsent batch was dropped");
    }

    #[test]
    fn a_finished_producer_has_nothing_to_abandon() {
        let mut f = Fixture::new(1 << 20);
        f.append("t", 1, keyed("a")).expect("append");
        f.acc.close();
        let drained = f.drain();
        complete(&mut f.acc, &drained);
        assert_eq!(f.acc.abandon(), 0);
        assert!(!f.acc.is_abandoned());
    }

    #[test]
    fn buffer_space_returns_when_a_batch_is_dropped() {
        let mut f = Fixture::new(1 << 20);
        let before = f.buffer.available_permits();
        f.append("t", 1, keyed("a")).expect("append");
        f.append("t", 1, keyed("b")).expect("append");
        assert_eq!(before - f.buffer.available_permits(), 2 * keyed("a").size());
        f.acc.close();
        let drained = f.drain();
        complete(&mut f.acc, &drained);
        drop(drained);
        assert_eq!(f.buffer.available_permits(), before);
    }

    #[test]
    fn other_partition_is_in_range_and_different() {
        assert_eq!(other_partition(0, 1), 0);
        for _ in 0..200 {
            let p = other_partition(2, 5);
            assert!(p < 5 && p != 2, "{p}");
        }
    }
}
