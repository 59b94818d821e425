//! Connection exhaustion: a flood of connections from one address that
//! never finish their handshake takes no more than its address's places,
//! leaves other clients served on both listeners, and is closed at the
//! handshake deadline; idle connections are closed after the idle timeout.
//!
//! All test traffic is on loopback: the flood comes from 127.0.0.1 and the
//! other client from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to `lo`).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use brooklet_broker::{Config, ConnSettings, EmbeddedBroker};
use brooklet_proto::v1 as pb;
use brooklet_tests::{DEADLINE, eventually, record};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Channel, Uri};

use crate::kafka::exchange;
use crate::metrics::{get, parse_exposition};

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Half of HTTP/2's 24-byte connection preface.
const HALF_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// Half of a Kafka frame: a size of 20, then 2 bytes.
const HALF_FRAME: &[u8] = &[0, 0, 0, 20, 0, 18];

/// A connection to `target` from `source`.
async fn connect_from(source: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// `n` connections to `target` from 127.0.0.1: every other one sends `half`
/// (of a preface or frame) and then nothing, the rest nothing at all.
async fn flood(target: SocketAddr, n: usize, half: &[u8]) -> Vec<TcpStream> {
    let mut flood = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = connect_from(FLOODER, target).await.expect("the flood connects");
        if i % 2 == 1 {
            // A connection closed at accept may refuse the bytes.
            let _ = stream.write_all(half).await;
        }
        flood.push(stream);
    }
    flood
}

/// Waits for the broker to close `stream`: a read returns the end of the
/// stream (or a reset), after whatever the broker sent first.
async fn closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(DEADLINE, end).await.expect("the broker closes the connection");
}

/// Opens gRPC connections from a given source address.
#[derive(Clone, Copy)]
struct From {
    source: IpAddr,
    target: SocketAddr,
}

impl tower_service::Service<Uri> for From {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let From { source, target } = *self;
        Box::pin(async move { connect_from(source, target).await.map(TokioIo::new) })
    }
}

/// The metric samples, by `name{labels}`.
async fn scrape(broker: &EmbeddedBroker) -> std::collections::BTreeMap<String, f64> {
    let (_, _, body) = get(broker.metrics_addr().expect("metrics are served"), "/metrics").await;
    parse_exposition(&body)
}

/// Connections `listener` closed for `reason`, as counted in the metrics.
fn closed_for(samples: &std::collections::BTreeMap<String, f64>, listener: &str, reason: &str) -> f64 {
    let key = format!("brooklet_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}}");
    samples.get(&key).copied().unwrap_or(0.0)
}

/// A broker with both listeners, metrics, at most 16 connections per
/// address and `handshake` and `idle` as its deadlines.
async fn broker(dir: &std::path::Path, handshake: Duration, idle: Duration) -> EmbeddedBroker {
    let mut config = Config::new(dir);
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.core.limits.max_connections = 64;
    config.connections =
        ConnSettings { handshake_timeout: handshake, idle_timeout: idle, max_per_address: 16 };
    EmbeddedBroker::start_with(config).await.expect("broker starts")
}

/// ApiVersions v0 then Metadata v1 (all topics) on `stream`; the Metadata
/// response.
async fn kafka_metadata(stream: &mut TcpStream) -> Vec<u8> {
    let api_versions = [0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    let response = exchange(stream, &api_versions).await.expect("ApiVersions is answered");
    assert_eq!(response[..4], 1i32.to_be_bytes(), "correlation id");
    assert_eq!(response[4..6], 0i16.to_be_bytes(), "no error");
    let metadata = [0, 3, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let response = exchange(stream, &metadata).await.expect("Metadata is answered");
    assert_eq!(response[..4], 2i32.to_be_bytes(), "correlation id");
    response
}

#[tokio::test]
async fn a_flood_from_one_address_leaves_other_clients_served_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    // A deadline far past the test: the flood holds its places throughout.
    let broker = broker(dir.path(), Duration::from_secs(300), Duration::from_secs(600)).await;
    let (grpc, kafka) = (broker.addr(), broker.kafka_addr().expect("a Kafka listener"));

    // Three times the per-address limit on each listener, 96 sockets in all.
    let grpc_flood = flood(grpc, 48, HALF_PREFACE).await;
    let kafka_flood = flood(kafka, 48, HALF_FRAME).await;
    let refused = eventually("the flood past the per-address limit to be refused", || async {
        let samples = scrape(&broker).await;
        let refused =
            (closed_for(&samples, "grpc", "per_address"), closed_for(&samples, "kafka", "per_address"));
        (refused.0 >= 32.0 && refused.1 >= 32.0).then_some(refused)
    })
    .await;
    assert_eq!(refused, (32.0, 32.0), "16 held on each listener, every other one refused and counted");

    // Another address is served on both listeners while the flood holds
    // its places.
    let channel = Channel::from_shared(broker.endpoint())
        .unwrap()
        .connect_with_connector(From { source: CLIENT, target: grpc })
        .await
        .expect("a client from another address connects");
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    admin
        .create_topic(pb::CreateTopicRequest { name: "flooded".into(), partitions: 1, ..Default::default() })
        .await
        .expect("the topic is created");
    pb::producer_service_client::ProducerServiceClient::new(channel)
        .produce(pb::ProduceRequest {
            topic: "flooded".into(),
            records: vec![record("served", Some(0))],
            ..Default::default()
        })
        .await
        .expect("a produce is served");
    let topics = admin.list_topics(pb::ListTopicsRequest {}).await.expect("topics are listed").into_inner();
    assert!(topics.topics.iter().any(|t| t.name == "flooded"), "{topics:?}");

    let mut client = connect_from(CLIENT, kafka).await.expect("a Kafka client from another address connects");
    let metadata =
        tokio::time::timeout(DEADLINE, kafka_metadata(&mut client)).await.expect("answered in time");
    assert!(metadata.windows(7).any(|w| w == b"flooded"), "Metadata names the topic");

    let samples = scrape(&broker).await;
    assert!(samples["brooklet_kafka_connections"] >= 17.0, "the flood's 16 and the client are open");
    assert!(samples["brooklet_connections_active"] >= 17.0, "the flood's 16 and the client are open");
    assert_eq!(closed_for(&samples, "grpc", "handshake_timeout"), 0.0);
    assert_eq!(closed_for(&samples, "kafka", "handshake_timeout"), 0.0);
    drop((grpc_flood, kafka_flood));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_without_a_first_request_or_idle_are_closed_after_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), Duration::from_millis(1000), Duration::from_secs(600)).await;
    let (grpc, kafka) = (broker.addr(), broker.kafka_addr().expect("a Kafka listener"));

    // Exactly the per-address limit: every one is accepted, none served.
    let mut grpc_flood = flood(grpc, 16, HALF_PREFACE).await;
    let mut kafka_flood = flood(kafka, 16, HALF_FRAME).await;
    for stream in grpc_flood.iter_mut().chain(&mut kafka_flood) {
        closed(stream).await;
    }
    let samples = eventually("every closed connection to be counted", || async {
        let samples = scrape(&broker).await;
        let counted = closed_for(&samples, "grpc", "handshake_timeout") >= 16.0
            && closed_for(&samples, "kafka", "handshake_timeout") >= 16.0;
        counted.then_some(samples)
    })
    .await;
    assert_eq!(closed_for(&samples, "grpc", "handshake_timeout"), 16.0);
    assert_eq!(closed_for(&samples, "kafka", "handshake_timeout"), 16.0);
    assert_eq!(closed_for(&samples, "grpc", "per_address"), 0.0, "none was refused at accept");

    // Their places are free again: the address is served. (A Kafka client's
    // request is sent as soon as it connects, so a loaded machine cannot
    // make it late for the short handshake deadline.)
    let mut client = TcpStream::connect(kafka).await.unwrap();
    tokio::time::timeout(DEADLINE, kafka_metadata(&mut client)).await.expect("answered in time");
    drop(client);
    broker.shutdown().await.unwrap();

    // A served connection is closed only once idle. This broker's handshake
    // deadline is long: a gRPC client's first request counts only once the
    // server has routed it, which a loaded machine may delay.
    let dir = tempfile::tempdir().unwrap();
    let broker = self::broker(dir.path(), Duration::from_secs(60), Duration::from_millis(2000)).await;
    let mut client = TcpStream::connect(broker.kafka_addr().expect("a Kafka listener")).await.unwrap();
    tokio::time::timeout(DEADLINE, kafka_metadata(&mut client)).await.expect("answered in time");
    closed(&mut client).await;
    eventually("the idle Kafka connection to be counted", || async {
        (closed_for(&scrape(&broker).await, "kafka", "idle_timeout") >= 1.0).then_some(())
    })
    .await;

    let admin = Channel::from_shared(broker.endpoint()).unwrap().connect_lazy();
    pb::admin_service_client::AdminServiceClient::new(admin.clone())
        .create_topic(pb::CreateTopicRequest { name: "quiet".into(), partitions: 1, ..Default::default() })
        .await
        .expect("the topic is created");
    // A long poll twice the idle timeout, the first request of its
    // connection: in flight, not idle.
    let channel = Channel::from_shared(broker.endpoint()).unwrap().connect_lazy();
    let poll =
        pb::FetchRequest { topic: "quiet".into(), partition: 0, offset: 0, max_bytes: 0, max_wait_ms: 4000 };
    let fetched =
        match pb::consumer_service_client::ConsumerServiceClient::new(channel.clone()).fetch(poll).await {
            Ok(fetched) => fetched,
            Err(status) => {
                let closed: Vec<_> = scrape(&broker)
                    .await
                    .into_iter()
                    .filter(|(k, _)| {
                        k.starts_with("brooklet_connections_closed_total")
                            || k.starts_with("brooklet_requests_total")
                    })
                    .collect();
                panic!("the long poll is answered, not cut: {status:?}; connections closed: {closed:?}")
            }
        };
    assert!(fetched.into_inner().batches.is_empty());
    // Both clients keep their connections open: the broker closes them.
    eventually("both idle gRPC connections to be closed and counted", || async {
        (closed_for(&scrape(&broker).await, "grpc", "idle_timeout") >= 2.0).then_some(())
    })
    .await;
    drop((admin, channel));
    broker.shutdown().await.unwrap();
}
