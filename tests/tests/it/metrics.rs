//! The metrics endpoint over real loopback HTTP: what Prometheus scrapes and
//! what an orchestrator's probes see.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::{DEADLINE, ReservedPort, TestBroker, record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 GET: status, headers (lower-cased names) and body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, BTreeMap<String, String>, String) {
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("metrics port accepts");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.expect("request sent");
        let mut response = String::new();
        conn.read_to_string(&mut response).await.expect("response read");
        response
    };
    let response = tokio::time::timeout(DEADLINE, exchange).await.expect("answered in time");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status.expect("a status code"), headers, body.to_owned())
}

/// Checks every line of a text exposition and returns its samples by
/// `name{labels}`. Without promtool at hand, this is the format's grammar
/// for what the broker writes: comments are `# HELP` or `# TYPE` lines;
/// samples are `name{label="value",...} value` with every name `brooklet_`.
pub(crate) fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name) = (words.next().unwrap(), words.next().expect("a metric name"));
            assert!(kind == "HELP" || kind == "TYPE", "unexpected comment: {line}");
            assert!(name.starts_with("brooklet_"), "unprefixed metric: {line}");
            if kind == "TYPE" {
                let t = words.next().expect("a type");
                assert!(["counter", "gauge", "histogram"].contains(&t), "unexpected type: {line}");
                assert!(typed.insert(name.to_owned()), "a family typed twice: {line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value is not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("brooklet_"), "unprefixed metric: {line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels.strip_prefix("{").and_then(|l| l.strip_suffix("\"}"));
            let inner = inner.unwrap_or_else(|| panic!("bad label set: {line}"));
            for pair in inner.split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad label name: {line}");
                assert!(!v.contains('\n') && !v.contains('"'), "bad label value: {line}");
            }
        }
        // A sample belongs to a family declared by a # TYPE line above it.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample without a # TYPE: {line}");
        assert!(samples.insert(series.to_owned(), value).is_none(), "duplicate series: {line}");
    }
    samples
}

/// `promtool check metrics`, where promtool is installed (Debian's
/// `prometheus` package; `.ci/run` installs it and sets
/// `BROOKLET_REQUIRE_PROMTOOL=1`, so CI never skips it); the grammar check
/// above runs everywhere.
fn promtool_check(exposition: &str) {
    use std::io::Write;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var_os("BROOKLET_REQUIRE_PROMTOOL").is_some_and(|v| v == "1") => {
            panic!("BROOKLET_REQUIRE_PROMTOOL=1 but promtool cannot run: {e}")
        }
        Err(_) => return,
    };
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}\n{exposition}"
    );
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    // A reserved port rather than port 0, so that once the broker is gone no
    // other test's listener can be given the port: see the end.
    let port = ReservedPort::new();
    config.metrics_listen = Some(port.addr());
    let broker = TestBroker::start_with(config).await;
    let addr = broker.metrics_addr().expect("metrics are served");
    assert_eq!(addr, port.addr());

    broker.create_topic("metered", 1).await;
    let records: Vec<_> = ["a", "bb", "ccc", "dddd", "eeeee"].iter().map(|v| record(v, Some(0))).collect();
    broker
        .producer()
        .produce(pb::ProduceRequest { topic: "metered".into(), records, ..Default::default() })
        .await
        .unwrap();
    let fetched = broker
        .consumer()
        .fetch(pb::FetchRequest {
            topic: "metered".into(),
            partition: 0,
            offset: 2,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.high_watermark, 5);
    broker
        .groups()
        .commit_offsets(pb::CommitOffsetsRequest {
            group: "readers".into(),
            offsets: vec![pb::PartitionOffset {
                topic: "metered".into(),
                partition: 0,
                offset: 3,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let missing = broker
        .consumer()
        .fetch(pb::FetchRequest {
            topic: "absent".into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (status, headers, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/plain; version=0.0.4"), "{headers:?}");
    let m = parse_exposition(&body);
    promtool_check(&body);
    let at = |series: &str| *m.get(series).unwrap_or_else(|| panic!("no {series} in\n{body}"));

    assert_eq!(at(r#"brooklet_records_produced_total{topic="metered"}"#), 5.0);
    assert_eq!(at(r#"brooklet_bytes_produced_total{topic="metered"}"#), 15.0);
    assert_eq!(at(r#"brooklet_records_fetched_total{topic="metered"}"#), 3.0, "offsets 2, 3 and 4");
    // Served bytes are the records' encodings, as stored and as sent.
    let served: usize =
        fetched.batches.iter().flat_map(|b| &b.records).map(prost::Message::encoded_len).sum();
    assert!(served > 12, "more than key + value + headers ({served})");
    assert_eq!(at(r#"brooklet_bytes_fetched_total{topic="metered"}"#), served as f64);
    assert_eq!(at(r#"brooklet_partition_high_watermark{topic="metered",partition="0"}"#), 5.0);
    assert_eq!(at(r#"brooklet_partition_log_start_offset{topic="metered",partition="0"}"#), 0.0);
    assert!(at(r#"brooklet_storage_bytes{topic="metered"}"#) > 15.0);
    assert!(at("brooklet_storage_disk_bytes") > 0.0);
    assert_eq!(at(r#"brooklet_group_committed_offset{group="readers",topic="metered",partition="0"}"#), 3.0);
    assert_eq!(at(r#"brooklet_group_lag{group="readers",topic="metered",partition="0"}"#), 2.0);

    let produce = "brooklet.v1.ProducerService/Produce";
    assert!(at(&format!(r#"brooklet_requests_total{{rpc="{produce}",code="OK"}}"#)) >= 1.0);
    assert_eq!(
        at(r#"brooklet_requests_total{rpc="brooklet.v1.ConsumerService/Fetch",code="NOT_FOUND"}"#),
        1.0
    );
    assert!(at(&format!(r#"brooklet_request_duration_seconds_count{{rpc="{produce}"}}"#)) >= 1.0);
    assert!(at(&format!(r#"brooklet_request_duration_seconds_bucket{{le="+Inf",rpc="{produce}"}}"#)) >= 1.0);
    // The produce and the commit were durable: at least one flush each,
    // though a flush may carry both.
    assert!(at("brooklet_group_commit_duration_seconds_count") >= 1.0);
    assert!(at("brooklet_group_commit_batches_sum") >= 2.0);
    assert!(at("brooklet_connections_active") >= 1.0, "the test's channel is open");
    assert_eq!(at("brooklet_requests_in_flight"), 0.0);
    assert_eq!(at("brooklet_produce_sequence_waits_total"), 0.0, "no producer batch came out of order");
    assert!(at("brooklet_uptime_seconds") > 0.0);
    if cfg!(target_os = "linux") {
        assert!(at("brooklet_process_resident_memory_bytes") > 0.0);
        assert!(at("brooklet_process_cpu_seconds_total") >= 0.0);
    }

    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "ready while serving");
    let grpc = broker.endpoint().trim_start_matches("http://").to_owned();
    assert_eq!(body, format!("ready\ngrpc {grpc}\nmetrics {addr}\n"));
    let (status, _, _) = get(addr, "/nothing").await;
    assert_eq!(status, 404);

    // Readiness turning 503 when shutdown begins is covered by the broker's
    // unit tests; here, the port closes with the broker. It is still
    // reserved, so a refused connection means the broker stopped listening.
    broker.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the metrics port is closed after shutdown");
    drop(port);
}

#[tokio::test]
async fn a_deleted_topic_leaves_no_partition_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = TestBroker::start_with(config).await;
    let addr = broker.metrics_addr().expect("metrics are served");
    broker.create_topic("brief", 2).await;
    let (_, _, body) = get(addr, "/metrics").await;
    assert!(body.contains(r#"brooklet_partition_high_watermark{topic="brief",partition="1"} 0"#), "{body}");
    broker.admin().delete_topic(pb::DeleteTopicRequest { name: "brief".into() }).await.unwrap();
    let (_, _, body) = get(addr, "/metrics").await;
    parse_exposition(&body);
    assert!(!body.contains(r#"topic="brief""#), "{body}");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_stream_that_fails_after_its_first_message_is_counted_by_its_final_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = TestBroker::start_with(config).await;
    let addr = broker.metrics_addr().expect("metrics are served");
    broker.create_topic("brief", 1).await;
    broker
        .producer()
        .produce(pb::ProduceRequest {
            topic: "brief".into(),
            records: vec![record("x", Some(0))],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stream = broker
        .consumer()
        .subscribe(pb::SubscribeRequest { topic: "brief".into(), partition: 0, offset: 0, max_bytes: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(DEADLINE, stream.message()).await.expect("in time").unwrap();
    assert!(first.is_some(), "the first message arrives");
    let subscribe = "brooklet.v1.ConsumerService/Subscribe";
    let (_, _, body) = get(addr, "/metrics").await;
    let m = parse_exposition(&body);
    assert_eq!(m.get("brooklet_requests_in_flight"), Some(&1.0), "the open stream is in flight");
    assert!(!body.contains(&format!(r#"rpc="{subscribe}",code="#)), "not counted while open:\n{body}");

    // Deleting the topic fails the open stream.
    broker.admin().delete_topic(pb::DeleteTopicRequest { name: "brief".into() }).await.unwrap();
    let end = tokio::time::timeout(DEADLINE, stream.message()).await.expect("in time");
    assert_eq!(end.expect_err("the stream fails").code(), tonic::Code::NotFound);

    let (_, _, body) = get(addr, "/metrics").await;
    let m = parse_exposition(&body);
    assert_eq!(
        m.get(&format!(r#"brooklet_requests_total{{rpc="{subscribe}",code="NOT_FOUND"}}"#)),
        Some(&1.0)
    );
    assert_eq!(m.get(&format!(r#"brooklet_requests_total{{rpc="{subscribe}",code="OK"}}"#)), None, "{body}");
    assert_eq!(m.get("brooklet_requests_in_flight"), Some(&0.0));
    broker.shutdown().await;
}

#[tokio::test]
async fn brokers_started_by_tests_serve_no_metrics_unless_asked() {
    let broker = TestBroker::start().await;
    assert_eq!(broker.metrics_addr(), None);
    broker.shutdown().await;
}

#[tokio::test]
async fn kafka_requests_errors_connections_and_bad_frames_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.kafka_auto_create_topics = false;
    let broker = brooklet_broker::EmbeddedBroker::start_with(config).await.expect("broker starts");
    let (addr, kafka) = (broker.metrics_addr().unwrap(), broker.kafka_addr().unwrap());
    let exchange = crate::kafka::exchange;

    // ApiVersions v0, then Metadata v1 for a topic that does not exist; the
    // connection stays open.
    let mut open = tokio::net::TcpStream::connect(kafka).await.unwrap();
    let response = exchange(&mut open, &[0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff]).await.expect("an answer");
    assert_eq!(response[..6], [0, 0, 0, 1, 0, 0], "correlation id 1, no error");
    let mut metadata = vec![0, 3, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0, 0, 0, 1, 0, 6];
    metadata.extend_from_slice(b"absent");
    exchange(&mut open, &metadata).await.expect("an answer");
    // ApiVersions of an unknown version is answered, with an error.
    exchange(&mut open, &[0, 18, 0, 99, 0, 0, 0, 3, 0xff, 0xff]).await.expect("an answer");
    // Fetch v99 and an unknown API key each close their connection.
    let mut fetch = tokio::net::TcpStream::connect(kafka).await.unwrap();
    assert_eq!(exchange(&mut fetch, &[0, 1, 0, 99, 0, 0, 0, 4, 0xff, 0xff]).await, None);
    let mut unknown = tokio::net::TcpStream::connect(kafka).await.unwrap();
    assert_eq!(exchange(&mut unknown, &[0x7f, 0, 0, 0, 0, 0, 0, 5, 0xff, 0xff]).await, None);

    // The closed connections are counted once their tasks end.
    let (body, m) = brooklet_tests::eventually("the closed Kafka connections to be counted", || async {
        let (_, _, body) = get(addr, "/metrics").await;
        let m = parse_exposition(&body);
        (m.get("brooklet_kafka_connections") == Some(&1.0)).then_some((body, m))
    })
    .await;
    promtool_check(&body);
    let at = |series: &str| *m.get(series).unwrap_or_else(|| panic!("no {series} in\n{body}"));
    assert_eq!(at("brooklet_kafka_connections_total"), 3.0);
    assert_eq!(at(r#"brooklet_kafka_requests_total{api="ApiVersions",version="0"}"#), 1.0);
    assert_eq!(at(r#"brooklet_kafka_requests_total{api="Metadata",version="1"}"#), 1.0);
    assert_eq!(at(r#"brooklet_kafka_request_duration_seconds_count{api="Metadata"}"#), 1.0);
    assert_eq!(at(r#"brooklet_kafka_request_duration_seconds_bucket{le="+Inf",api="Metadata"}"#), 1.0);
    let errors = |api: &str, code: &str| {
        at(&format!(r#"brooklet_kafka_request_errors_total{{api="{api}",code="{code}"}}"#))
    };
    assert_eq!(errors("Metadata", "UNKNOWN_TOPIC_OR_PARTITION"), 1.0, "the missing topic");
    assert_eq!(errors("ApiVersions", "UNSUPPORTED_VERSION"), 1.0);
    assert_eq!(errors("Fetch", "UNSUPPORTED_VERSION"), 1.0);
    assert_eq!(at(r#"brooklet_kafka_frame_errors_total{reason="unsupported_version"}"#), 1.0);
    assert_eq!(at(r#"brooklet_kafka_frame_errors_total{reason="unknown_api"}"#), 1.0);
    assert!(!body.contains(r#"version="99""#), "unsupported versions make no series:\n{body}");
    drop(open);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_and_readiness_name_every_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = brooklet_broker::EmbeddedBroker::start_with(config).await.expect("broker starts");
    let (grpc, kafka, metrics) =
        (broker.addr(), broker.kafka_addr().unwrap(), broker.metrics_addr().unwrap());

    let (status, _, body) = get(metrics, "/readyz").await;
    assert_eq!((status, body), (200, format!("ready\ngrpc {grpc}\nkafka {kafka}\nmetrics {metrics}\n")));

    let admin = brooklet_client::Admin::builder(broker.endpoint()).build().unwrap();
    let listeners: Vec<(String, String)> = tokio::time::timeout(DEADLINE, admin.status())
        .await
        .expect("in time")
        .unwrap()
        .listeners
        .into_iter()
        .map(|l| (l.name, l.address))
        .collect();
    let expected = [("grpc", grpc), ("kafka", kafka), ("metrics", metrics)];
    assert_eq!(listeners, expected.map(|(n, a)| (n.to_owned(), a.to_string())));
    broker.shutdown().await.unwrap();
}
