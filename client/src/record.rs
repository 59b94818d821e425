//! The records an application handles: [`ProducerRecord`] going out,
//! [`ConsumerRecord`] coming in, [`RecordMetadata`] acknowledging, the
//! [`Header`] they share, and [`IntoBytes`], what their keys, values and
//! header values can be made of. The conversions to and from the wire types
//! live here too, crate-private, so no proto type leaks into the public API.
//! With the `json` feature, records also convert to and from JSON.

use std::borrow::Cow;
use std::sync::Arc;

use brooklet_proto::v1;
use bytes::{Bytes, BytesMut};

/// What a record's key, value or header value can be made of: anything that
/// is bytes or a string, owned or borrowed.
///
/// Owned buffers (`Bytes`, `BytesMut`, `Vec<u8>`, `String`, `Box<[u8]>`, an
/// owned `Cow`) move into the record without a copy, and `&Bytes` is a cheap
/// reference-counted clone. Borrowed data (`&str`, `&[u8]`, `&String`,
/// `&Vec<u8>`, `[u8; N]`, `&[u8; N]`, a borrowed `Cow`) is copied, so it
/// need not outlive the record: `.key(customer_id.as_str())` works for a
/// local `String`. String literals are copied too, a few bytes;
/// [`Bytes::from_static`] passes one without the copy.
///
/// ```
/// use brooklet_client::ProducerRecord;
///
/// fn record_for(customer_id: &str, payload: &[u8]) -> ProducerRecord {
///     ProducerRecord::new(payload).key(customer_id)
/// }
///
/// let customer_id = String::from("customer-7");
/// let payload = vec![1, 2, 3];
/// let record = record_for(customer_id.as_str(), &payload[..2]);
/// drop((customer_id, payload)); // the record copied what it borrowed
/// # let _ = record;
/// ```
///
/// Implement it for a type of your own to pass that type directly.
pub trait IntoBytes {
    /// The bytes, moved or copied into a [`Bytes`].
    fn into_bytes(self) -> Bytes;
}

impl IntoBytes for Bytes {
    fn into_bytes(self) -> Bytes {
        self
    }
}

impl IntoBytes for &Bytes {
    fn into_bytes(self) -> Bytes {
        self.clone()
    }
}

impl IntoBytes for BytesMut {
    fn into_bytes(self) -> Bytes {
        self.freeze()
    }
}

impl IntoBytes for Vec<u8> {
    fn into_bytes(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBytes for String {
    fn into_bytes(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBytes for Box<[u8]> {
    fn into_bytes(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBytes for Cow<'_, [u8]> {
    fn into_bytes(self) -> Bytes {
        match self {
            Cow::Borrowed(bytes) => Bytes::copy_from_slice(bytes),
            Cow::Owned(bytes) => Bytes::from(bytes),
        }
    }
}

impl IntoBytes for Cow<'_, str> {
    fn into_bytes(self) -> Bytes {
        match self {
            Cow::Borrowed(text) => Bytes::copy_from_slice(text.as_bytes()),
            Cow::Owned(text) => Bytes::from(text),
        }
    }
}

impl IntoBytes for &[u8] {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl IntoBytes for &str {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl IntoBytes for &Vec<u8> {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl IntoBytes for &String {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl<const N: usize> IntoBytes for [u8; N] {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(&self)
    }
}

impl<const N: usize> IntoBytes for &[u8; N] {
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

/// One record header. Names may repeat; order is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value.
    pub value: Bytes,
}

impl Header {
    /// A header named `name` holding `value`.
    pub fn new(name: impl Into<String>, value: impl IntoBytes) -> Self {
        Self { name: name.into(), value: value.into_bytes() }
    }

    pub(crate) fn from_proto(header: v1::Header) -> Self {
        Self { name: header.name, value: header.value }
    }

    pub(crate) fn into_proto(self) -> v1::Header {
        v1::Header { name: self.name, value: self.value }
    }
}

/// A record to send with [`Producer::send`](crate::Producer::send).
///
/// Keys, values and header values are anything [`IntoBytes`]: owned buffers
/// move in, borrowed strings and slices are copied.
///
/// ```
/// use brooklet_client::ProducerRecord;
///
/// let order_id = format!("order-{}", 42);
/// let record = ProducerRecord::new("shipped")
///     .key(order_id.as_str())
///     .header("trace-id", "abc123");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Bytes,
    pub(crate) headers: Vec<Header>,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) partition: Option<u32>,
}

/// Bytes a record costs beyond its key, value and headers, in the producer's
/// accounting: roughly its protobuf framing and the producer's bookkeeping.
/// Counting it keeps a flood of empty records from escaping the buffer limit.
const RECORD_OVERHEAD: usize = 32;
/// Bytes a header costs beyond its name and value, likewise.
const HEADER_OVERHEAD: usize = 8;

impl ProducerRecord {
    /// A record holding `value`, without key or headers, for the partition
    /// the producer picks and stamped with the broker's append time.
    pub fn new(value: impl IntoBytes) -> Self {
        Self {
            key: None,
            value: value.into_bytes(),
            headers: Vec::new(),
            timestamp_ms: None,
            partition: None,
        }
    }

    /// A record whose value is `value` serialized as JSON, otherwise as
    /// [`new`](Self::new) makes it. Fails only where `serde_json` does: a
    /// map whose keys are not strings, or a `Serialize` implementation that
    /// fails. Needs the `json` feature.
    ///
    /// ```
    /// use brooklet_client::ProducerRecord;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Shipped<'a> {
    ///     order: &'a str,
    ///     parcels: u32,
    /// }
    ///
    /// let order = String::from("order-42");
    /// let record = ProducerRecord::json(&Shipped { order: &order, parcels: 2 })?.key(order.as_str());
    /// # let _ = record;
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::new(serde_json::to_vec(value)?))
    }

    /// Sets the key. Without an explicit [`partition`](Self::partition), the
    /// key picks the partition, so records with the same key stay in order.
    pub fn key(mut self, key: impl IntoBytes) -> Self {
        self.key = Some(key.into_bytes());
        self
    }

    /// Appends a header. Names may repeat; a consumer reads them in the
    /// order they were appended.
    pub fn header(mut self, name: impl Into<String>, value: impl IntoBytes) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch. Left unset,
    /// the broker stamps the record with its append time.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Sends the record to this partition, whatever its key.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The record's size in the producer's accounting of batches and buffer.
    pub(crate) fn size(&self) -> usize {
        let headers: usize =
            self.headers.iter().map(|h| h.name.len() + h.value.len() + HEADER_OVERHEAD).sum();
        RECORD_OVERHEAD + self.key.as_ref().map_or(0, Bytes::len) + self.value.len() + headers
    }

    pub(crate) fn into_proto(self, partition: u32) -> v1::ProduceRecord {
        v1::ProduceRecord {
            partition: Some(partition),
            key: self.key,
            value: self.value,
            headers: self.headers.into_iter().map(Header::into_proto).collect(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// How safe an acknowledged record is: what a producer asks for with
/// [`ProducerBuilder::acks`](crate::ProducerBuilder::acks) and what each
/// acknowledgement reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Fire and forget: a record's delivery resolves as soon as its batch is
    /// handed to the connection, without an offset, before the broker has
    /// answered. Nothing is promised: a record the broker refuses, or one
    /// lost with the connection or a broker crash, is lost without an error
    /// to its sender (the producer logs a warning). The broker appends as
    /// for [`Written`](Durability::Written).
    None,
    /// In the broker's storage engine and readable by consumers, but not yet
    /// flushed to disk: a broker crash can lose it.
    Written,
    /// Flushed and fdatasync'd before the acknowledgement.
    Durable,
}

impl Durability {
    /// Reads the broker's answer, taking anything unknown as the weaker
    /// promise.
    pub(crate) fn from_proto(value: i32) -> Self {
        if value == v1::Durability::Durable as i32 { Durability::Durable } else { Durability::Written }
    }

    pub(crate) fn into_proto(self) -> i32 {
        match self {
            Durability::None => v1::Durability::None as i32,
            Durability::Written => v1::Durability::Written as i32,
            Durability::Durable => v1::Durability::Durable as i32,
        }
    }

    /// Its name on the command line and in reports: `none`, `written` or
    /// `durable`.
    pub fn name(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Written => "written",
            Durability::Durable => "durable",
        }
    }
}

/// Where an acknowledged record was written, or, with
/// [`Durability::None`], that it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// The record's topic (shared by the records of a batch).
    pub topic: Arc<str>,
    /// The partition it was appended to.
    pub partition: u32,
    /// Its offset in that partition; `None` when the producer did not wait
    /// for the broker's answer ([`Durability::None`]).
    pub offset: Option<u64>,
    /// The timestamp the producer set, or `None` when the broker stamped its
    /// append time (which the acknowledgement does not carry).
    pub timestamp_ms: Option<i64>,
    /// What the acknowledgement promises.
    pub durability: Durability,
}

/// A record read by a [`Consumer`](crate::Consumer).
///
/// Code that handles records can be unit-tested with records built by
/// [`ConsumerRecord::new`], without a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerRecord {
    /// The record's topic (shared by the records of a fetch).
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch: the producer's timestamp, or the
    /// broker's append time when the producer set none.
    pub timestamp_ms: i64,
    /// The key, if the record has one.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// The headers, in the order they were sent.
    pub headers: Vec<Header>,
}

impl ConsumerRecord {
    /// A record as a consumer would read it at `offset` of `partition` of
    /// `topic`, holding `value`, without key or headers and with timestamp 0
    /// until [`with_key`](Self::with_key), [`with_header`](Self::with_header)
    /// and [`with_timestamp_ms`](Self::with_timestamp_ms) set them. Consumers
    /// build their records themselves; this is for testing the code that
    /// handles them.
    ///
    /// ```
    /// use brooklet_client::ConsumerRecord;
    ///
    /// /// The handler under test: the amount in cents, if the currency is euros.
    /// fn euro_cents(record: &ConsumerRecord) -> Option<u64> {
    ///     if record.header("currency")?.as_ref() != b"EUR" {
    ///         return None;
    ///     }
    ///     std::str::from_utf8(&record.value).ok()?.parse().ok()
    /// }
    ///
    /// let record = ConsumerRecord::new("payments", 2, 41, "1250")
    ///     .with_key("order-7")
    ///     .with_header("currency", "EUR")
    ///     .with_timestamp_ms(1_700_000_000_000);
    /// assert_eq!(euro_cents(&record), Some(1250));
    /// assert_eq!(euro_cents(&record.clone().with_header("currency", "USD")), None);
    /// ```
    pub fn new(topic: impl Into<Arc<str>>, partition: u32, offset: u64, value: impl IntoBytes) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: 0,
            key: None,
            value: value.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// The record with this key.
    pub fn with_key(mut self, key: impl IntoBytes) -> Self {
        self.key = Some(key.into_bytes());
        self
    }

    /// The record with this header appended after its others.
    pub fn with_header(mut self, name: impl Into<String>, value: impl IntoBytes) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The record with this timestamp, in milliseconds since the Unix epoch.
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// The value of the record's last header named `name` (compared exactly,
    /// case included), or `None` if it has none. The last, as Kafka clients'
    /// `lastHeader` gives, so a header appended later overrides an earlier
    /// one; [`headers_named`](Self::headers_named) gives them all.
    ///
    /// ```
    /// use brooklet_client::ConsumerRecord;
    ///
    /// let record = ConsumerRecord::new("t", 0, 0, "v").with_header("hop", "a").with_header("hop", "b");
    /// assert_eq!(record.header("hop").map(|v| &v[..]), Some(&b"b"[..]));
    /// assert_eq!(record.header("Hop"), None);
    /// let hops: Vec<_> = record.headers_named("hop").map(|v| &v[..]).collect();
    /// assert_eq!(hops, [&b"a"[..], &b"b"[..]]);
    /// ```
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().rev().find(|h| h.name == name).map(|h| &h.value)
    }

    /// The values of the record's headers named `name` (compared exactly), in
    /// the order they were sent.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a Bytes> + 'a {
        self.headers.iter().filter(move |h| h.name == name).map(|h| &h.value)
    }

    /// The value deserialized from JSON. `T` may borrow from the record
    /// (`&str` fields), or own its data (any
    /// [`DeserializeOwned`](serde::de::DeserializeOwned) type). Needs the
    /// `json` feature.
    ///
    /// ```
    /// use brooklet_client::ConsumerRecord;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Shipped<'a> {
    ///     order: &'a str,
    ///     parcels: u32,
    /// }
    ///
    /// let record = ConsumerRecord::new("orders", 0, 7, r#"{"order":"order-42","parcels":2}"#);
    /// let shipped: Shipped<'_> = record.json()?;
    /// assert_eq!((shipped.order, shipped.parcels), ("order-42", 2));
    /// assert!(ConsumerRecord::new("orders", 0, 8, "not json").json::<Shipped<'_>>().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.value)
    }
}

/// Flattens fetched batches into records, dropping any before `from` (the
/// broker starts at the requested offset; this guards against one that
/// returns a whole batch around it).
pub(crate) fn records_from_batches(
    topic: &str,
    partition: u32,
    from: u64,
    batches: Vec<v1::RecordBatch>,
) -> Vec<ConsumerRecord> {
    let mut records = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
    let topic: Arc<str> = topic.into();
    for batch in batches {
        for record in batch.records {
            let offset = batch.base_offset + u64::from(record.offset_delta);
            if offset < from {
                continue;
            }
            records.push(ConsumerRecord {
                topic: Arc::clone(&topic),
                partition,
                offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key,
                value: record.value,
                headers: record.headers.into_iter().map(Header::from_proto).collect(),
            });
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let record =
            ProducerRecord::new("v").key("k").header("a", "1").header("a", "2").timestamp_ms(7).partition(3);
        let proto = record.into_proto(3);
        assert_eq!(proto.partition, Some(3));
        assert_eq!(proto.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(proto.value, Bytes::from("v"));
        assert_eq!(proto.timestamp_ms, Some(7));
        let headers: Vec<_> = proto.headers.iter().map(|h| (h.name.as_str(), &h.value[..])).collect();
        assert_eq!(headers, [("a", &b"1"[..]), ("a", &b"2"[..])]);
    }

    #[test]
    fn size_counts_key_value_headers_and_overhead() {
        assert_eq!(ProducerRecord::new("").size(), RECORD_OVERHEAD);
        let record = ProducerRecord::new(vec![0u8; 100]).key("key").header("hn", "hv!");
        assert_eq!(record.size(), RECORD_OVERHEAD + 100 + 3 + 2 + 3 + HEADER_OVERHEAD);
    }

    #[test]
    fn batches_flatten_to_offsets_from_the_requested_one() {
        let record = |delta, value: &'static str| v1::Record {
            offset_delta: delta,
            timestamp_ms: 1000 + i64::from(delta),
            key: None,
            value: Bytes::from(value),
            headers: vec![v1::Header { name: "h".into(), value: Bytes::from("x") }],
        };
        let batches = vec![
            v1::RecordBatch {
                partition: 2,
                base_offset: 10,
                records: vec![record(0, "a"), record(1, "b"), record(2, "c")],
            },
            v1::RecordBatch { partition: 2, base_offset: 13, records: vec![record(0, "d")] },
        ];
        let records = records_from_batches("t", 2, 11, batches);
        let got: Vec<_> = records.iter().map(|r| (r.offset, &r.value[..])).collect();
        assert_eq!(got, [(11, &b"b"[..]), (12, &b"c"[..]), (13, &b"d"[..])]);
        assert_eq!(&*records[0].topic, "t");
        assert_eq!(records[0].partition, 2);
        assert_eq!(records[0].timestamp_ms, 1001);
        assert_eq!(records[0].headers, [Header::new("h", "x")]);
    }

    /// Builds a record from data that lives shorter than it: compiling is
    /// most of the test (`impl Into<Bytes>` wanted `'static` borrows).
    fn record_from_borrowed_data() -> ProducerRecord {
        let customer_id = format!("customer-{}", 7);
        let payload: Vec<u8> = (0u8..10).collect();
        let trace = String::from("trace-1");
        ProducerRecord::new(&payload[2..5])
            .key(customer_id.as_str())
            .header("trace", &trace)
            .header("raw", &payload)
    }

    #[test]
    fn borrowed_keys_values_and_header_values_are_copied() {
        let record = record_from_borrowed_data();
        assert_eq!(record.key.as_deref(), Some(&b"customer-7"[..]));
        assert_eq!(record.value, Bytes::from_static(&[2, 3, 4]));
        assert_eq!(
            record.headers,
            [Header::new("trace", "trace-1"), Header::new("raw", (0u8..10).collect::<Vec<_>>())]
        );
        let arrays = ProducerRecord::new([1u8, 2]).key(b"k").header("c", Cow::Borrowed("x"));
        assert_eq!((&arrays.value[..], arrays.key.as_deref()), (&[1u8, 2][..], Some(&b"k"[..])));
        assert_eq!(arrays.headers, [Header::new("c", "x")]);
    }

    #[test]
    fn owned_buffers_move_in_without_a_copy() {
        let vec = vec![7u8; 64];
        let at = vec.as_ptr();
        assert_eq!(ProducerRecord::new(vec).value.as_ptr(), at);
        let text = String::from("a value long enough to be on the heap");
        let at = text.as_ptr();
        assert_eq!(ProducerRecord::new("v").key(text).key.map(|k| k.as_ptr()), Some(at));
        let bytes = Bytes::from(vec![1u8; 16]);
        assert_eq!(ProducerRecord::new("v").key(&bytes).key.map(|k| k.as_ptr()), Some(bytes.as_ptr()));
        assert_eq!(ProducerRecord::new(bytes.clone()).value.as_ptr(), bytes.as_ptr());
        let owned = Cow::<str>::Owned(String::from("owned"));
        let at = owned.as_ptr();
        assert_eq!(ProducerRecord::new(owned).value.as_ptr(), at);
    }

    #[test]
    fn a_consumer_record_built_by_hand_has_what_it_was_given() {
        let record =
            ConsumerRecord::new("t", 3, 99, "v").with_key("k").with_header("h", "1").with_timestamp_ms(5);
        assert_eq!((&*record.topic, record.partition, record.offset, record.timestamp_ms), ("t", 3, 99, 5));
        assert_eq!((record.key.as_deref(), &record.value[..]), (Some(&b"k"[..]), &b"v"[..]));
        assert_eq!(record.headers, [Header::new("h", "1")]);
        let bare = ConsumerRecord::new(String::from("t"), 0, 0, Vec::new());
        assert_eq!((bare.key, bare.timestamp_ms, bare.headers.len()), (None, 0, 0));
    }

    #[test]
    fn header_by_name_is_the_last_of_that_name() {
        let record = ConsumerRecord::new("t", 0, 0, "v")
            .with_header("a", "1")
            .with_header("b", "2")
            .with_header("a", "3");
        assert_eq!(record.header("a"), Some(&Bytes::from("3")));
        assert_eq!(record.header("b"), Some(&Bytes::from("2")));
        assert_eq!(record.header("A"), None);
        assert_eq!(record.header("c"), None);
        let all: Vec<_> = record.headers_named("a").collect();
        assert_eq!(all, [&Bytes::from("1"), &Bytes::from("3")]);
        assert_eq!(record.headers_named("a").next_back(), record.header("a"));
        assert_eq!(record.headers_named("c").count(), 0);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trips_through_a_record() {
        use std::collections::BTreeMap;

        let sent: BTreeMap<&str, u32> = [("parcels", 2), ("weight", 700)].into();
        let record = ProducerRecord::json(&sent).unwrap().key("order-42");
        assert_eq!(record.key.as_deref(), Some(&b"order-42"[..]));
        let read = ConsumerRecord::new("orders", 0, 0, record.value.clone());
        assert_eq!(read.json::<BTreeMap<&str, u32>>().unwrap(), sent);
        assert_eq!(read.json::<BTreeMap<String, u32>>().unwrap().len(), 2);
        assert!(read.json::<Vec<u32>>().is_err());
        let non_string_keys: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(ProducerRecord::json(&non_string_keys).is_err());
    }

    #[test]
    fn unknown_durability_is_the_weaker_promise() {
        assert_eq!(Durability::from_proto(v1::Durability::Durable as i32), Durability::Durable);
        assert_eq!(Durability::from_proto(v1::Durability::Written as i32), Durability::Written);
        assert_eq!(Durability::from_proto(0), Durability::Written);
        assert_eq!(Durability::from_proto(42), Durability::Written);
    }
}
