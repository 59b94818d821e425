//! The web console in a real browser: headless Chromium, driven by
//! `tests/console/browse.js` (playwright-core), creates a topic, sends a
//! record, finds it in the record browser, sees a group's lag, shows a
//! `<script>` value as text without running it, and says what failed when a
//! page's data does not load. Its screenshots are kept in
//! `target/console-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::{TestBroker, browser_available, console_script, record};

/// How long the whole browser session may take: Chromium's start and a
/// dozen page loads, on a loaded machine.
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);

/// `target/console-screenshots/`, next to this test binary's
/// `target/debug/deps/`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe.ancestors().nth(3).expect("the test binary is in target/PROFILE/deps");
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory is created");
    dir
}

#[tokio::test]
async fn a_browser_creates_sends_browses_and_sees_lag_and_markup_stays_text() {
    if !browser_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.console = true;
    let broker = TestBroker::start_with(config).await;
    let addr = broker.metrics_addr().expect("the console is served");

    // A record whose value is markup.
    broker.create_topic("xss", 1).await;
    let produce = |topic: &str, records: Vec<pb::ProduceRecord>| pb::ProduceRequest {
        topic: topic.into(),
        records,
        ..Default::default()
    };
    let mut producer = broker.producer();
    producer.produce(produce("xss", vec![record("<script>alert(1)</script>", Some(0))])).await.unwrap();
    // A group with no live members, committed at 2 of 5: lag 3.
    broker.create_topic("jobs", 1).await;
    let jobs = (0..5).map(|i| record(&format!("job {i}"), Some(0))).collect();
    producer.produce(produce("jobs", jobs)).await.unwrap();
    broker
        .groups()
        .commit_offsets(pb::CommitOffsetsRequest {
            group: "lagging".into(),
            offsets: vec![pb::PartitionOffset {
                topic: "jobs".into(),
                partition: 0,
                offset: 2,
                metadata: None,
            }],
            member_id: String::new(),
            member_epoch: 0,
        })
        .await
        .unwrap();

    let url = format!("http://{addr}/console/");
    let shots = screenshot_dir();
    let child = console_script("browse.js", &[&url, shots.to_str().expect("a UTF-8 target path")]);
    let out = tokio::time::timeout(BROWSER_DEADLINE, child.wait_with_output())
        .await
        .expect("the browser session finishes in time")
        .expect("its output is read");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser session failed ({:?}); screenshots in {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code(),
        shots.display()
    );
    let steps: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("ok: ")).collect();
    assert_eq!(steps.len(), 9, "{stdout}");
    assert!(steps[6].contains("404") && steps[6].contains("doesnotexist"), "{stdout}");
    assert_eq!(steps[8], "no dialog, no page error");

    // What the browser did, seen from the broker.
    let topics = broker.admin().list_topics(pb::ListTopicsRequest::default()).await.unwrap().into_inner();
    assert!(topics.topics.iter().any(|t| t.name == "browsed" && t.partitions == 2), "{topics:?}");
    for name in ["overview", "topics", "records", "group"] {
        assert!(shots.join(format!("{name}.png")).is_file(), "screenshot {name}.png");
    }
    broker.shutdown().await;
}
