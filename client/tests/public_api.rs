//! The public API as an application sees it, from outside the crate: errors
//! match without importing tonic, records are built from borrowed data, and
//! a handler of consumed records is tested without a broker. Compiling this
//! file is half of each test.

use brooklet_client::{Code, ConsumerRecord, Error, Header, IntoBytes, ProducerRecord};

/// The code of a broker error, typed as the client's own `Code`.
fn broker_code(err: &Error) -> Option<Code> {
    match err {
        Error::Broker { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn broker_errors_match_on_the_clients_own_code() {
    let err = Error::Broker { code: Code::ResourceExhausted, message: "too many requests".into() };
    assert!(matches!(err, Error::Broker { code: Code::ResourceExhausted, .. }));
    assert!(!matches!(err, Error::Broker { code: Code::NotFound, .. }));
    assert_eq!(broker_code(&err), Some(Code::ResourceExhausted));
    assert_eq!(broker_code(&Error::Closed), None);
    assert_eq!(err.to_string(), "the broker answered RESOURCE_EXHAUSTED: too many requests");
    assert_eq!(Code::NotFound.to_string(), "NOT_FOUND");
    assert_eq!(Code::DataLoss.name(), "DATA_LOSS");
}

/// What the issue's `.key(customer_id.as_str())` was: a record built from a
/// `String` that lives shorter than the record.
fn order_record(customer_id: String, payload: &[u8]) -> ProducerRecord {
    let trace = format!("trace-{}", payload.len());
    ProducerRecord::new(payload).key(customer_id.as_str()).header("trace", trace.as_str())
}

#[test]
fn records_take_borrowed_strings_and_slices() {
    let payload = vec![1u8, 2, 3, 4];
    let record = order_record(String::from("customer-7"), &payload[1..3]);
    drop(payload);
    // What the producer sends is private; equal records prove the copies.
    let expected = ProducerRecord::new(vec![2u8, 3]).key("customer-7").header("trace", "trace-2");
    assert_eq!(record, expected);
    assert_eq!(Header::new(String::from("h"), &vec![1u8][..]), Header::new("h", [1u8]));
}

/// A type of the application's own, passed as a value directly.
struct OrderId(u64);

impl IntoBytes for OrderId {
    fn into_bytes(self) -> bytes::Bytes {
        self.0.to_be_bytes().to_vec().into()
    }
}

#[test]
fn an_application_type_can_be_a_key() {
    assert_eq!(
        ProducerRecord::new("v").key(OrderId(1)),
        ProducerRecord::new("v").key([0, 0, 0, 0, 0, 0, 0, 1])
    );
}

/// A handler an application would test: the shipment's parcel count, read
/// from a header that may be repeated (the last one counts).
fn parcels(record: &ConsumerRecord) -> Option<u32> {
    std::str::from_utf8(record.header("parcels")?).ok()?.parse().ok()
}

#[test]
fn a_handler_is_tested_with_records_built_by_hand() {
    let record = ConsumerRecord::new("shipments", 1, 17, "shipped")
        .with_key("order-42")
        .with_header("parcels", "2")
        .with_header("parcels", "3")
        .with_timestamp_ms(1_700_000_000_000);
    assert_eq!(parcels(&record), Some(3));
    assert_eq!(record.headers_named("parcels").count(), 2);
    assert_eq!((&*record.topic, record.partition, record.offset), ("shipments", 1, 17));
    assert_eq!(parcels(&ConsumerRecord::new("shipments", 1, 18, "shipped")), None);
}

#[cfg(feature = "json")]
#[test]
fn json_values_round_trip_with_derived_types() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Shipped {
        order: String,
        parcels: u32,
    }

    let sent = Shipped { order: "order-42".into(), parcels: 2 };
    let record = ProducerRecord::json(&sent).unwrap();
    assert_eq!(record, ProducerRecord::new(r#"{"order":"order-42","parcels":2}"#));
    let read = ConsumerRecord::new("orders", 0, 0, r#"{"order":"order-42","parcels":2}"#);
    assert_eq!(read.json::<Shipped>().unwrap(), sent);
    let err: serde_json::Error = ConsumerRecord::new("orders", 0, 1, "{").json::<Shipped>().unwrap_err();
    assert!(err.is_eof(), "{err}");
}
