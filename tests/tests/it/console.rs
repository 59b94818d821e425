//! The web console on a real broker's HTTP listener: mounted at
//! `/console/` beside `/metrics`, its charts fed by the broker's own
//! counters, and absent with `--console off`.

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::{TestBroker, eventually, record};

use crate::metrics::get;

async fn broker(console: bool) -> (tempfile::TempDir, TestBroker) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.console = console;
    let broker = TestBroker::start_with(config).await;
    (dir, broker)
}

#[tokio::test]
async fn the_console_is_served_beside_the_metrics_and_charts_the_broker() {
    let (_dir, broker) = broker(true).await;
    let addr = broker.metrics_addr().expect("metrics are served");
    let (status, headers, _) = get(addr, "/").await;
    assert_eq!((status, headers.get("location").map(String::as_str)), (302, Some("/console/")));
    let (status, headers, page) = get(addr, "/console/").await;
    assert_eq!(status, 200);
    assert!(page.contains("console.js"), "{page}");
    assert!(headers["content-security-policy"].contains("script-src 'self'"), "{headers:?}");
    let (status, _, _) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "metrics still served");

    let (status, _, body) = get(addr, "/console/api/overview").await;
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> =
        overview["listeners"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["grpc", "metrics"]);

    broker.create_topic("charted", 1).await;
    broker
        .producer()
        .produce(pb::ProduceRequest {
            topic: "charted".into(),
            records: vec![record("a", Some(0)), record("b", Some(0))],
            ..Default::default()
        })
        .await
        .unwrap();
    // The sampler reads the broker's totals once a second: the produce shows
    // in a sample taken after it.
    eventually("a sample with the produced records and their latency", || async {
        let (_, _, body) = get(addr, "/console/api/history").await;
        let h: serde_json::Value = serde_json::from_str(&body).ok()?;
        let produced: f64 = h["records_in"].as_array()?.iter().filter_map(serde_json::Value::as_f64).sum();
        let latency = h["produce_p99_ms"].as_array()?.iter().any(|v| v.as_f64().is_some());
        (produced > 0.0 && latency).then_some(())
    })
    .await;
    let (_, _, body) = get(addr, "/console/api/topics/charted/records?latest=10").await;
    let records: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(records["records"][1]["value"]["text"], "b");
    broker.shutdown().await;
}

#[tokio::test]
async fn console_off_serves_only_the_metrics() {
    let (_dir, broker) = broker(false).await;
    let addr = broker.metrics_addr().expect("metrics are served");
    for path in ["/console", "/console/", "/console/api/topics"] {
        let (status, _, body) = get(addr, path).await;
        assert_eq!((status, body.as_str()), (404, "the console is off (--console off)\n"), "{path}");
    }
    assert_eq!(get(addr, "/").await.0, 404);
    assert_eq!(get(addr, "/metrics").await.0, 200);
    broker.shutdown().await;
}
