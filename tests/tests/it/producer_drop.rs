//! A producer dropped without `close()`: what it still holds is delivered,
//! or its count reported, never lost silently. In-process, and through a
//! real program whose `main` returns without closing its producer (the
//! client's `drop_without_close` example).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use brooklet_client::{Admin, Delivery, NewTopic, Producer, ProducerRecord};
use brooklet_tests::{DEADLINE, Finished, TestBroker, eventually, finish};
use futures::FutureExt as _;

/// Long enough that no batch leaves before the producer is dropped: only
/// what the drop does can send them.
const LINGER: Duration = Duration::from_secs(3600);

/// A client example of this build, built (or found up to date) once per
/// test process, as `brooklet_bin` builds the broker's binary.
fn example_bin(name: &str) -> PathBuf {
    static BUILT: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
    // The test binary is target/<profile>/deps/it-<hash>.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let mut built = BUILT.lock();
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--quiet", "-p", "brooklet-client", "--example", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the {name} example failed");
        built.push(name.to_owned());
    }
    profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Records in `topic`, over all its partitions.
async fn records_in(admin: &Admin, topic: &str) -> u64 {
    let description = admin.describe_topic(topic).await.expect("topic described");
    description.partitions.iter().map(|p| p.high_watermark - p.log_start_offset).sum()
}

async fn create_topic(broker: &TestBroker, topic: &str, partitions: u32) -> Admin {
    let admin = Admin::connect(broker.endpoint()).unwrap();
    admin.create_topic(topic, NewTopic::new(partitions)).await.unwrap();
    admin
}

/// The records a run of `drop_without_close` said were not delivered,
/// summed over its reports.
fn undelivered(run: &Finished) -> u64 {
    run.stderr
        .lines()
        .filter(|line| line.contains("not delivered"))
        .map(|line| {
            line.split_whitespace()
                .find_map(|word| word.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a count in {line:?}"))
        })
        .sum()
}

/// Runs `drop_without_close` to send `count` records to `topic`, and waits
/// for it to exit, successfully.
async fn drop_without_close(endpoint: &str, topic: &str, count: u64, options: &[&str]) -> Finished {
    let child = tokio::process::Command::new(example_bin("drop_without_close"))
        .args([endpoint, topic, &count.to_string()])
        .args(options)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example starts");
    let run = finish(child).await;
    assert!(run.success, "{options:?}: {:?}\n{}", run.code, run.stderr);
    assert!(run.stdout.contains(&format!("{count} records sent")), "{options:?}: {}", run.stdout);
    run
}

/// The report's case, on a current-thread runtime (its task never runs
/// again once `main` returns): every record is reported, with the count.
#[tokio::test]
async fn a_program_returning_without_close_reports_every_record_it_did_not_deliver() {
    let broker = TestBroker::start().await;
    let admin = create_topic(&broker, "orders", 3).await;
    let options = ["--current-thread", "--linger-ms", "3600000"];
    let run = drop_without_close(&broker.endpoint(), "orders", 1000, &options).await;
    assert_eq!(undelivered(&run), 1000, "{}", run.stderr);
    assert!(run.stderr.contains("brooklet-client: error: 1000 records were not delivered"), "{}", run.stderr);
    assert_eq!(records_in(&admin, "orders").await, 0);
    broker.shutdown().await;
}

/// The report's case as `#[tokio::main]` has it, on a multi-thread runtime:
/// a worker may send some records while the runtime shuts down. Every record
/// is in the topic or counted in the report (here a `tracing` subscriber's).
#[tokio::test]
async fn a_program_returning_without_close_delivers_or_reports_every_record() {
    let broker = TestBroker::start().await;
    let admin = create_topic(&broker, "orders", 3).await;
    for options in [&["--log"][..], &[]] {
        let before = records_in(&admin, "orders").await;
        let run = drop_without_close(&broker.endpoint(), "orders", 1000, options).await;
        let reported = undelivered(&run);
        assert!(reported <= 1000, "{options:?}: {}", run.stderr);
        if options.contains(&"--log") && reported > 0 {
            assert!(run.stderr.contains("ERROR"), "a tracing event: {}", run.stderr);
        }
        // A request the program sent just before it exited may still be
        // being written; none is written twice.
        let written = eventually("every record written or reported", || async {
            let written = records_in(&admin, "orders").await - before;
            (written + reported >= 1000).then_some(written)
        })
        .await;
        assert!(written <= 1000, "{options:?}: {written} written");
    }
    broker.shutdown().await;
}

/// With `flush_on_drop`, the program's drop waits: every record is in the
/// topic before it exits, nothing is reported, on either kind of runtime.
#[tokio::test]
async fn a_program_returning_without_close_with_flush_on_drop_delivers_everything() {
    let broker = TestBroker::start().await;
    let admin = create_topic(&broker, "orders", 3).await;
    let mut expected = 0;
    for flavor in [&["--current-thread"][..], &[]] {
        let options = [flavor, &["--linger-ms", "3600000", "--flush-on-drop-ms", "30000"]].concat();
        let run = drop_without_close(&broker.endpoint(), "orders", 1000, &options).await;
        assert_eq!(undelivered(&run), 0, "{options:?}: {}", run.stderr);
        expected += 1000;
        assert_eq!(records_in(&admin, "orders").await, expected, "{options:?}");
    }
    broker.shutdown().await;
}

/// `n` records to `topic`, buffered until something sends them.
async fn send_lingering(producer: &Producer, topic: &str, n: usize) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    for i in 0..n {
        deliveries.push(producer.send(topic, ProducerRecord::new(format!("{i}"))).await.unwrap());
    }
    assert_eq!(producer.pending_records(), n, "nothing sent before the drop");
    deliveries
}

/// Every delivery resolved, successfully, by the time the drop returned.
fn assert_delivered(deliveries: Vec<Delivery>) {
    for delivery in deliveries {
        let written = delivery.now_or_never().expect("resolved before the drop returned").unwrap();
        assert!(written.offset.is_some());
    }
}

/// Without `flush_on_drop`, a dropped producer's records are still sent, in
/// the background, while its runtime runs.
#[tokio::test]
async fn a_dropped_producer_delivers_in_the_background_while_its_runtime_runs() {
    let broker = TestBroker::start().await;
    let admin = create_topic(&broker, "orders", 3).await;
    let producer = Producer::builder(broker.endpoint()).linger(LINGER).build().unwrap();
    let deliveries = send_lingering(&producer, "orders", 100).await;
    drop(producer);
    for delivery in deliveries {
        assert!(delivery.await.unwrap().offset.is_some());
    }
    assert_eq!(records_in(&admin, "orders").await, 100);
    broker.shutdown().await;
}

/// With `flush_on_drop`, the drop returns once every record is
/// acknowledged, wherever it happens: on a worker of a multi-thread
/// runtime, on a current-thread runtime (which the drop blocks), and
/// outside any runtime after the one the producer was used in is gone.
/// Each on a runtime of its own, apart from the broker's.
#[tokio::test]
async fn flush_on_drop_delivers_before_the_drop_returns_on_any_runtime() {
    let broker = TestBroker::start().await;
    let admin = create_topic(&broker, "orders", 3).await;
    let builder = Producer::builder(broker.endpoint()).linger(LINGER).flush_on_drop(DEADLINE);

    let on_a_worker = builder.clone();
    let deliveries = tokio::task::spawn_blocking(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let task = tokio::spawn(async move {
                let producer = on_a_worker.build().unwrap();
                let deliveries = send_lingering(&producer, "orders", 100).await;
                drop(producer);
                deliveries
            });
            task.await.unwrap()
        })
    })
    .await
    .unwrap();
    assert_delivered(deliveries);

    let on_current_thread = builder.clone();
    let deliveries = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let producer = on_current_thread.build().unwrap();
            let deliveries = send_lingering(&producer, "orders", 100).await;
            drop(producer);
            deliveries
        })
    })
    .await
    .unwrap();
    assert_delivered(deliveries);

    let deliveries = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (producer, deliveries) = runtime.block_on(async {
            let producer = builder.build().unwrap();
            let deliveries = send_lingering(&producer, "orders", 100).await;
            (producer, deliveries)
        });
        drop(runtime);
        drop(producer);
        deliveries
    })
    .await
    .unwrap();
    assert_delivered(deliveries);

    assert_eq!(records_in(&admin, "orders").await, 300);
    broker.shutdown().await;
}
