//! The client's circuit breakers, endpoint lists and wrong-endpoint errors,
//! against real brokers: a port that refuses connections fails fast and
//! opens the breaker; a standby endpoint takes over from a refusing one; the
//! metrics port is named for what it is; and a broker restarting on the same
//! port is ridden out by a producer and a group consumer without an error.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use brooklet_broker::{Config, ServeError};
use brooklet_client::{
    Admin, BreakerState, Consumer, Delivery, Error, NewTopic, Offset, Producer, ProducerRecord,
};
use brooklet_tests::{DEADLINE, ReservedPort, TestBroker, eventually};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Half the client's default request timeout: a call that waits this long
/// on a refusing port is one that hangs.
const FAST: Duration = Duration::from_secs(15);

/// A broker pointed at a port that refuses connections finds out long
/// before its request timeout, and its breaker says so; the calls after it
/// fail at once with the breaker's error until it tries again.
#[tokio::test]
async fn a_wrong_port_fails_fast_and_opens_the_breaker() {
    let wrong = ReservedPort::new();
    let admin = Admin::connect(wrong.endpoint()).unwrap();
    assert_eq!(admin.breakers().state(), BreakerState::Closed);
    let err = tokio::time::timeout(FAST, admin.list_topics()).await.expect("no hang").unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains(&wrong.endpoint()), "{err}");
    assert_eq!(admin.breakers().state(), BreakerState::Open);
    let endpoints = admin.breakers().endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].state, BreakerState::Open);
    assert!(endpoints[0].failures >= 1, "{endpoints:?}");

    // The next call either fails at once (the breaker is still open) or is
    // the probe that finds the port still refusing.
    let err = tokio::time::timeout(FAST, admin.list_topics()).await.expect("no hang").unwrap_err();
    match &err {
        Error::CircuitOpen { endpoint, retry_in, .. } => {
            assert_eq!(endpoint, &wrong.endpoint());
            assert!(*retry_in <= Duration::from_secs(2), "{retry_in:?}");
            let text = err.to_string();
            assert!(text.contains("circuit breaker open") && text.contains("try again in"), "{text}");
        }
        Error::Unavailable { .. } => {}
        other => panic!("expected CircuitOpen or Unavailable, got {other:?}"),
    }
    assert_eq!(admin.breakers().state(), BreakerState::Open);

    // A producer finds out on its first send.
    let producer = Producer::builder(wrong.endpoint()).build().unwrap();
    let err = tokio::time::timeout(FAST, producer.send("t", ProducerRecord::new("v")))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. } | Error::CircuitOpen { .. }), "{err}");
    assert_eq!(producer.breakers().state(), BreakerState::Open);
}

/// The first endpoint refuses connections, the second is a live broker:
/// every call, even one that must not be repeated, is served by the second,
/// and once the first's breaker is open it is no longer tried.
#[tokio::test]
async fn a_standby_endpoint_takes_over_from_a_refusing_one() {
    let broker = TestBroker::start().await;
    let down = ReservedPort::new();
    let list = format!("{},{}", down.endpoint(), broker.endpoint());

    // A comma-separated list...
    let admin = Admin::connect(&list).unwrap();
    admin.create_topic("standby", NewTopic::new(1)).await.expect("created through the second");
    assert!(matches!(admin.create_topic("standby", NewTopic::new(1)).await, Err(Error::TopicExists { .. })));
    for _ in 0..5 {
        admin.list_topics().await.expect("listed through the second");
    }
    let states: Vec<_> = admin.breakers().endpoints().into_iter().map(|e| e.state).collect();
    assert_eq!(states, [BreakerState::Open, BreakerState::Closed]);
    assert_eq!(admin.breakers().state(), BreakerState::Closed, "the client as a whole works");

    // ... or the builders' `endpoints`.
    let producer =
        Producer::builder("unused:1").endpoints([down.endpoint(), broker.endpoint()]).build().unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(producer.send("standby", ProducerRecord::new(format!("{i}"))).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.expect("acknowledged by the second");
    }
    producer.close().await.unwrap();

    let mut consumer = Consumer::builder(&list).build().unwrap();
    consumer.assign("standby", &[0]);
    consumer.seek("standby", 0, Offset::Earliest).unwrap();
    let mut values = Vec::new();
    while values.len() < 10 {
        let records = tokio::time::timeout(DEADLINE, consumer.poll()).await.expect("records").unwrap();
        values.extend(records.into_iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()));
    }
    assert_eq!(values, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    broker.shutdown().await;
}

/// A client pointed at the broker's metrics port is told that the endpoint
/// does not speak Brooklet's gRPC API, not "Unimplemented".
#[tokio::test]
async fn the_metrics_port_is_named_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = TestBroker::start_with(config).await;
    let metrics = format!("http://{}", broker.metrics_addr().expect("metrics are served"));

    let admin = Admin::connect(&metrics).unwrap();
    let err = admin.list_topics().await.unwrap_err();
    let Error::NotBrooklet { endpoint, http_status } = &err else {
        panic!("expected NotBrooklet, got {err:?}");
    };
    assert_eq!((endpoint.as_str(), *http_status), (metrics.as_str(), 404));
    let text = err.to_string();
    assert!(text.contains("does not speak Brooklet's gRPC API") && text.contains("metrics port"), "{text}");
    // Something answered: the breaker stays closed.
    assert_eq!(admin.breakers().state(), BreakerState::Closed);

    let producer = Producer::builder(&metrics).build().unwrap();
    let err = producer.send("t", ProducerRecord::new("v")).await.unwrap_err();
    assert!(matches!(err, Error::NotBrooklet { http_status: 404, .. }), "{err}");
    broker.shutdown().await;
}

/// A broker serving `dir` on exactly `addr`, in this process.
struct SamePortBroker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl SamePortBroker {
    async fn start(dir: &Path, addr: SocketAddr) -> SamePortBroker {
        // Beside the test's `ReservedPort`, which holds the port (not
        // listening) while no broker does.
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the reserved port");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(brooklet_broker::run(Config::new(dir), listener, async {
            let _ = stopped.await;
        }));
        SamePortBroker { stop, task }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the broker task").expect("clean shutdown");
    }
}

fn value(i: usize) -> ProducerRecord {
    ProducerRecord::new(format!("{i}")).key(format!("k{i}"))
}

/// A broker restarts on the same port, refusing connections for a second
/// in between: a producer's records sent meanwhile wait in its buffer and
/// are acknowledged once it is back, and a group consumer polling
/// throughout reads every record, neither seeing an error. The producer's
/// breaker opens while the broker is down and closes when it is back.
#[tokio::test]
async fn a_producer_and_a_group_consumer_ride_out_a_restart_on_the_same_port() {
    const EACH: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let port = ReservedPort::new();
    let broker = SamePortBroker::start(dir.path(), port.addr()).await;
    let endpoint = port.endpoint();
    Admin::connect(&endpoint).unwrap().create_topic("restart", NewTopic::new(2)).await.unwrap();

    let mut consumer = Consumer::builder(&endpoint)
        .group("riders")
        .max_wait(Duration::from_millis(100))
        .auto_commit(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    consumer.subscribe(&["restart"]).unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        while seen.len() < 3 * EACH {
            for record in consumer.poll().await? {
                seen.insert(String::from_utf8(record.value.to_vec()).unwrap());
            }
        }
        consumer.close().await?;
        Ok::<_, Error>(seen)
    });

    let producer = Producer::builder(&endpoint).build().unwrap();
    let send = |range: std::ops::Range<usize>| {
        let producer = producer.clone();
        async move {
            let mut deliveries: Vec<Delivery> = Vec::new();
            for i in range {
                deliveries.push(producer.send("restart", value(i)).await.expect("buffered"));
            }
            deliveries
        }
    };
    for delivery in send(0..EACH).await {
        delivery.await.expect("acknowledged before the restart");
    }

    broker.shutdown().await;
    // Sent while the broker is down: the partition counts are known, so
    // the records wait in the buffer, retried as the breaker allows.
    let buffered = send(EACH..2 * EACH).await;
    eventually("the producer's breaker to open", || async {
        (producer.breakers().state() == BreakerState::Open).then_some(())
    })
    .await;
    // Down for longer than one cool-down: a probe has found it still down
    // (more failures than the 5 that opened the breaker).
    eventually("a probe to find the broker still down", || async {
        producer.breakers().endpoints().iter().any(|e| e.failures > 5).then_some(())
    })
    .await;
    let broker = SamePortBroker::start(dir.path(), port.addr()).await;

    for delivery in buffered {
        delivery.await.expect("acknowledged after the restart, without an error");
    }
    assert_eq!(producer.breakers().state(), BreakerState::Closed);
    for delivery in send(2 * EACH..3 * EACH).await {
        delivery.await.expect("acknowledged");
    }
    producer.close().await.unwrap();

    let seen = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the consumer reads every record")
        .unwrap()
        .expect("the consumer saw no error");
    let expected: BTreeSet<String> = (0..3 * EACH).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    broker.shutdown().await;
    drop(port);
}
