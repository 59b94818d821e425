//! Kafka's wire protocol: a real Kafka client (kafka-python) produces to and
//! consumes from the broker unchanged.

use std::path::PathBuf;
use std::process::Stdio;

use brooklet_broker::{Config, EmbeddedBroker};
use brooklet_tests::{DEADLINE, KafkaClient, kafka_client_available};

#[tokio::test]
async fn kafka_python_produces_and_consumes_in_order() {
    if !kafka_client_available(KafkaClient::KafkaPython).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = EmbeddedBroker::start_with(config).await.expect("broker starts");
    let addr = broker.kafka_addr().expect("a Kafka listener");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka/roundtrip.py");
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(addr.to_string())
        .arg("orders")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, run).await.expect("kafka-python finishes in time").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kafka-python failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"produced 100"), "{stdout}");
    let records: Vec<String> = (0..100).map(|i| format!("{i} k{i} v{i} {i}")).collect();
    assert_eq!(lines[1..101], records.iter().map(String::as_str).collect::<Vec<_>>()[..], "{stdout}");
    assert_eq!(
        lines[101..],
        [
            "consumed 100",
            "bounds 0 100",
            "by-time 0 gone None 1000",
            "by-time 1 later b'x' 2000",
            "found 1 2000"
        ],
        "{stdout}"
    );
    broker.shutdown().await.unwrap();
}

/// Sends one frame and reads the response frame, or `None` once the broker
/// closed the connection.
pub(crate) async fn exchange(stream: &mut tokio::net::TcpStream, frame: &[u8]) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&(frame.len() as i32).to_be_bytes()).await.ok()?;
    stream.write_all(frame).await.ok()?;
    let size = stream.read_i32().await.ok()?;
    let mut response = vec![0; size as usize];
    stream.read_exact(&mut response).await.ok()?;
    Some(response)
}

#[tokio::test]
async fn api_versions_of_an_unknown_version_and_bad_frames_are_answered_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = EmbeddedBroker::start_with(config).await.expect("broker starts");
    let addr = broker.kafka_addr().expect("a Kafka listener");
    tokio::time::timeout(DEADLINE, async {
        // ApiVersions v99 (key 18), correlation id 7, null client id: a v0
        // response with UNSUPPORTED_VERSION (35) and what is supported.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = [0, 18, 0, 99, 0, 0, 0, 7, 0xff, 0xff];
        let response = exchange(&mut stream, &request).await.expect("an answer");
        assert_eq!(response[..4], 7i32.to_be_bytes(), "correlation id");
        assert_eq!(response[4..6], 35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
        let count = i32::from_be_bytes(response[6..10].try_into().unwrap()) as usize;
        let apis: Vec<(i16, i16, i16)> = response[10..10 + count * 6]
            .chunks(6)
            .map(|c| {
                let at = |i: usize| i16::from_be_bytes([c[i], c[i + 1]]);
                (at(0), at(2), at(4))
            })
            .collect();
        for api in [(0, 3, 9), (1, 4, 12), (2, 1, 6), (3, 0, 12), (18, 0, 3), (22, 0, 4)] {
            assert!(apis.contains(&api), "{api:?} in {apis:?}");
        }
        // The connection still serves; a frame with an unknown API key
        // closes it.
        let unknown = [0x7f, 0x00, 0, 0, 0, 0, 0, 8, 0xff, 0xff];
        assert_eq!(exchange(&mut stream, &unknown).await, None);
        // So does a frame larger than the request limit, announced by its size.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap_or(0), 0, "closed");
        // And the broker serves new connections: ApiVersions v0.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let response =
            exchange(&mut stream, &[0, 18, 0, 0, 0, 0, 0, 9, 0xff, 0xff]).await.expect("an answer");
        assert_eq!(response[..6], [0, 0, 0, 9, 0, 0], "correlation id 9, no error");
    })
    .await
    .expect("in time");
    broker.shutdown().await.unwrap();
}

/// Runs `tests/kafka/compacted.py STEP` against `addr`; its output lines.
async fn compacted_step(step: &str, addr: &str, topic: &str) -> Vec<String> {
    let child = tokio::process::Command::new("python3")
        .arg(brooklet_tests::kafka_scripts().join("compacted.py"))
        .args([step, addr, topic])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = brooklet_tests::finish(child).await;
    assert!(out.success, "compacted.py {step}: {out:?}");
    out.stdout.lines().map(str::to_owned).collect()
}

/// A Kafka producer's null value is a tombstone on a compacted topic:
/// compaction removes its key, and a Kafka consumer reads what is left, at
/// the offsets it had, across the gaps.
#[tokio::test]
async fn a_kafka_tombstone_deletes_its_key_on_a_compacted_topic() {
    if !kafka_client_available(KafkaClient::KafkaPython).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.core.retention_check_interval = std::time::Duration::from_millis(20);
    let broker = brooklet_tests::TestBroker::start_with(config).await;
    let addr = broker.kafka_addr().expect("a Kafka listener").to_string();
    let config = [
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("delete.retention.ms".to_owned(), "0".to_owned()),
    ]
    .into();
    let request = brooklet_proto::v1::CreateTopicRequest { name: "state".into(), partitions: 1, config };
    broker.admin().create_topic(request).await.unwrap();

    let sent = compacted_step("produce", &addr, "state").await;
    assert_eq!(sent, ["sent [0, 1, 2]", "sent [3, 4]", "sent [5]"]);
    // Compaction runs in the background: wait until a and b's older records
    // and b's tombstone are gone.
    let b = &broker;
    brooklet_tests::eventually("compaction", || async move {
        let request = brooklet_proto::v1::FetchRequest { topic: "state".into(), ..Default::default() };
        let fetched = b.consumer().fetch(request).await.ok()?.into_inner();
        (fetched.batches.iter().map(|b| b.records.len()).sum::<usize>() == 2).then_some(())
    })
    .await;
    let read = compacted_step("consume", &addr, "state").await;
    assert_eq!(read, ["3 c 1", "5 a 3"]);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_broker_refuses_to_advertise_every_interface_to_kafka_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    // Refused before anything is bound.
    config.kafka_listen = Some("0.0.0.0:0".parse().unwrap());
    let err = EmbeddedBroker::start_with(config).await.expect_err("refused");
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(chain.contains("binds every interface; set --kafka-advertised HOST:PORT"), "{chain}");
}
