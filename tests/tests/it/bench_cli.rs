//! `brooklet bench` end to end: the real binary against a real `serve` child
//! process (or an embedded broker, for TLS and authentication), and the
//! in-process storage and disk benches in a temporary directory. Small workloads; the tests check what was counted and the shape
//! of the output, never how fast anything was.

use std::path::Path;

use brooklet_broker::{Config, EmbeddedBroker};
use brooklet_tests::certs::{CertFiles, TestCa};
use brooklet_tests::{BrokerProcess, Finished, TestBroker, brooklet_command, eventually, finish};
use serde_json::Value;

/// `brooklet ARGS` with the variables `env`, and none of the client
/// commands' own from the environment the tests run in.
async fn brooklet_with(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let child = brooklet_command(args).envs(env.iter().copied()).spawn().expect("brooklet runs");
    finish(child).await
}

/// Runs a bench with `--json` and returns the one JSON object it printed.
async fn bench_json(args: &[&str]) -> Value {
    bench_json_with(args, &[]).await
}

/// As [`bench_json`], with the variables `env`.
async fn bench_json_with(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = brooklet_with(&all, env).await;
    assert!(out.success, "brooklet {all:?} failed: {}", out.stderr);
    let stdout = out.stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "exactly one JSON object on stdout: {stdout}");
    let value: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert!(value.is_object(), "{value}");
    value
}

/// A bench run against `endpoint`.
async fn against(endpoint: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--broker", endpoint, "--timeout", "10"]);
    bench_json(&all).await
}

fn number(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("`{key}` is a number in {v}"))
}

fn positive(v: &Value, key: &str) -> f64 {
    let n = number(v, key);
    assert!(n > 0.0, "`{key}` is positive in {v}");
    n
}

/// Throughput is positive and the latency percentiles are ordered.
fn assert_figures(v: &Value) {
    positive(v, "records_per_sec");
    positive(v, "mb_per_sec");
    positive(v, "seconds");
    let latency = &v["latency_ms"];
    let ordered: Vec<f64> = ["p50", "p99", "p999", "max"].iter().map(|k| positive(latency, k)).collect();
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "percentiles are ordered: {latency}");
}

#[tokio::test]
async fn produce_then_consume_then_e2e_against_a_served_broker() {
    let dir = tempfile::tempdir().unwrap();
    let server = BrokerProcess::start(dir.path()).await;
    let ep = server.endpoint.clone();

    let produced = against(
        &ep,
        &["produce", "--topic", "t", "--records", "2000", "--record-size", "100", "--producers", "2"],
    )
    .await;
    assert_eq!(produced["bench"], "produce");
    assert_eq!(produced["records"], 2000);
    assert_eq!(produced["sent"], 2000);
    assert_eq!(produced["bytes"], 2000 * 100);
    assert_eq!(produced["config"]["partitions"], 2, "one partition per producer: {produced}");
    assert_eq!(produced["config"]["acks"], "durable");
    assert_figures(&produced);
    assert_eq!(produced["latency_ms"]["count"], 2000, "one sample per record");

    let consumed = against(&ep, &["consume", "--topic", "t", "--records", "2000"]).await;
    assert_eq!(consumed["records"], 2000, "{consumed}");
    assert_eq!(consumed["bytes"], 2000 * 100);
    assert_eq!(consumed["available"], 2000);
    positive(&consumed, "records_per_sec");
    positive(&consumed, "mb_per_sec");
    assert!(consumed["latency_ms"].is_null(), "{consumed}");

    // Two consumers share the partitions and stop at the end of the log;
    // a count below what is there stops early, exactly at the count.
    let shared = against(&ep, &["consume", "--topic", "t", "--consumers", "2", "--group", "g"]).await;
    assert_eq!(shared["records"], 2000, "{shared}");
    assert_eq!(shared["stopped_by"], "end of log");
    let admin = brooklet_client::Admin::connect(ep.as_str()).unwrap();
    let committed = admin.fetch_offsets("g", Some("t")).await.unwrap();
    // Keyless records go where each producer's sticky partitioner chose, at
    // random: both producers may have chosen the same partition.
    let described = admin.describe_topic("t").await.unwrap();
    let mut holding: Vec<u32> =
        described.partitions.iter().filter(|p| p.high_watermark > 0).map(|p| p.partition).collect();
    holding.sort_unstable();
    let mut committed_partitions: Vec<u32> = committed.iter().map(|c| c.partition).collect();
    committed_partitions.sort_unstable();
    assert_eq!(
        committed_partitions, holding,
        "every partition read committed under the group: {committed:?}"
    );
    assert_eq!(committed.iter().map(|c| c.offset).sum::<u64>(), 2000, "{committed:?}");
    let some = against(&ep, &["consume", "--topic", "t", "--records", "700"]).await;
    assert_eq!(some["records"], 700, "{some}");
    assert_eq!(some["stopped_by"], "records");

    // Keys and no waiting for acknowledgements: no latency, and it says so.
    let unacked =
        against(&ep, &["produce", "--topic", "t", "--records", "300", "--key-size", "8", "--acks", "none"])
            .await;
    assert_eq!(unacked["records"], 300);
    assert_eq!(unacked["bytes"], 300 * 108);
    assert!(unacked["latency_ms"].is_null(), "{unacked}");
    assert!(unacked["latency"].as_str().unwrap().contains("not awaited"), "{unacked}");
    assert!(unacked["max_in_flight_observed"].is_null(), "no window without acks: {unacked}");
    // Answered before the sync that makes them readable, as `brooklet
    // produce --acks none` is (see cli.rs): wait for that sync.
    eventually("every record sent without waiting to be readable", || {
        let ep = ep.clone();
        async move {
            let all = against(&ep, &["consume", "--topic", "t"]).await;
            assert!(all["records"].as_u64().unwrap() <= 2300, "{all}");
            (all["records"] == 2300).then_some(())
        }
    })
    .await;

    let e2e =
        against(&ep, &["e2e", "--topic", "e", "--records", "500", "--producers", "2", "--consumers", "2"])
            .await;
    assert_eq!(e2e["acked"], 500, "{e2e}");
    assert!(number(&e2e, "records") >= 500.0, "consumers received every record: {e2e}");
    assert_figures(&e2e);
    let ack = &e2e["ack_latency_ms"];
    assert!(ack["p50"].as_f64().is_some_and(|p| p > 0.0), "{e2e}");

    server.terminate().await;
}

#[tokio::test]
async fn bench_produce_keeps_at_most_max_in_flight_records_unacknowledged() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    // Without linger and with quick acks, a producer sends far faster than
    // acknowledgements come back: only the window holds it back.
    let args = [
        "produce",
        "--topic",
        "w",
        "--records",
        "1000",
        "--producers",
        "2",
        "--linger-ms",
        "0",
        "--acks",
        "written",
        "--max-in-flight",
        "4",
    ];
    let produced = against(&ep, &args).await;
    assert_eq!(produced["records"], 1000, "{produced}");
    assert_eq!(produced["latency_ms"]["count"], 1000, "{produced}");
    assert_eq!(produced["config"]["max_in_flight"], 4);
    let observed = produced["max_in_flight_observed"].as_u64().expect("a count");
    assert!((1..=4).contains(&observed), "at most 4 records in flight per producer: {produced}");
    broker.shutdown().await;
}

#[tokio::test]
async fn storage_and_disk_benches_measure_in_a_temporary_directory_and_remove_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();

    let storage = bench_json(&["storage", "--duration", "1", "--dir", path, "--writers", "2"]).await;
    assert_eq!(storage["bench"], "storage");
    assert_figures(&storage);
    let records = positive(&storage, "records");
    assert_eq!(number(&storage, "bytes"), records * 100.0, "100-byte records by default");
    assert_eq!(storage["config"]["acks"], "durable");
    assert_eq!(storage["config"]["in_flight"], 4, "as many batches as the client pipelines per partition");
    assert!(storage["config"]["rate"].is_null(), "unpaced by default: {storage}");
    let broker_default = brooklet_broker::DEFAULT_FLUSH_MAX_DELAY.as_millis() as u64;
    assert_eq!(
        storage["config"]["flush_max_delay_ms"], broker_default,
        "the broker's group commit by default"
    );

    // With a group-commit window, as `brooklet serve --flush-max-delay-ms`.
    let windowed = bench_json(&[
        "storage",
        "--duration",
        "1",
        "--dir",
        path,
        "--writers",
        "2",
        "--flush-max-delay-ms",
        "2",
    ])
    .await;
    assert_figures(&windowed);
    assert_eq!(windowed["config"]["flush_max_delay_ms"], 2);

    let disk = bench_json(&["disk", "--dir", path, "--size-mb", "8", "--appends", "100"]).await;
    positive(&disk, "seq_fdatasync_mb_per_sec");
    let p50 = positive(&disk, "fdatasync_p50_us");
    let p99 = positive(&disk, "fdatasync_p99_us");
    assert!(p50 <= p99, "{disk}");
    assert_eq!(disk["appends"], 100);
    assert_eq!(disk["seq_bytes"], 8 << 20);

    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the benches leave nothing behind: {left:?}");
}

#[tokio::test]
async fn bench_storage_pipelines_each_writer_and_holds_a_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();

    let piped =
        bench_json(&["storage", "--dir", path, "--writers", "2", "--in-flight", "3", "--duration", "0.5"])
            .await;
    assert_eq!(piped["config"]["in_flight"], 3, "{piped}");
    positive(&piped, "records");
    assert_eq!(piped["latency_ms"]["count"], piped["batches"], "one sample per batch: {piped}");
    let observed = piped["max_in_flight_observed"].as_u64().expect("a count");
    assert!((1..=3).contains(&observed), "at most 3 batches in flight per writer: {piped}");

    // Paced: two writers of 10-record batches share 2000 records/s, so each
    // sends a batch every 10 ms. A bound on what pacing lets out, not on
    // how fast this machine is: at most the rate over the run, with room
    // to spare, plus the one batch each writer sends when its schedule
    // starts.
    let (rate, secs) = (2000.0, 1.0);
    let paced = bench_json(&[
        "storage",
        "--dir",
        path,
        "--writers",
        "2",
        "--record-size",
        "100",
        "--batch-bytes",
        "1000",
        "--rate",
        "2000",
        "--duration",
        "1",
    ])
    .await;
    assert_eq!(paced["config"]["rate"], rate, "{paced}");
    assert_eq!(paced["config"]["batch_records"], 10, "{paced}");
    let records = positive(&paced, "records");
    let bound = rate * secs * 1.5 + 2.0 * 10.0;
    assert!(records <= bound, "pacing lets out at most {bound} records: {paced}");
    // The run lasts at least its duration, so the rate is bounded too.
    assert!(number(&paced, "seconds") >= secs, "{paced}");
    assert!(number(&paced, "records_per_sec") <= bound / secs, "{paced}");
    assert_eq!(paced["latency_ms"]["count"], paced["batches"], "{paced}");

    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the bench leaves nothing behind: {left:?}");
}

#[tokio::test]
async fn bad_arguments_fail_with_one_clear_line() {
    // Arguments are checked before anything is reached: no broker is needed.
    let unreachable = ["--broker", "http://127.0.0.1:1"];
    let cases: &[(&[&str], &str)] = &[
        (&["produce", "--records", "10", "--duration", "1"], "exclusive"),
        (&["produce", "--record-size", "0"], "--record-size must be 1 to 1048576"),
        (&["produce", "--record-size", "2000000"], "--record-size must be 1 to 1048576"),
        (&["produce", "--records", "0"], "--records must be at least 1"),
        (&["produce", "--duration", "-1"], "--duration must be above 0"),
        (&["produce", "--rate", "0"], "--rate"),
        (&["produce", "--producers", "0"], "--producers"),
        (&["e2e", "--record-size", "4"], "--record-size must be 8"),
        (&["consume", "--consumers", "0"], "--consumers"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        all.extend_from_slice(&unreachable);
        check_fails(&all, needle).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    check_fails(&["bench", "storage", "--dir", path, "--writers", "0"], "--writers").await;
    check_fails(&["bench", "storage", "--dir", path, "--record-size", "0"], "--record-size").await;
    check_fails(
        &["bench", "storage", "--dir", path, "--flush-max-delay-ms", "1001"],
        "--flush-max-delay-ms must be 0 to 1000, got 1001",
    )
    .await;
    check_fails(
        &["bench", "storage", "--dir", path, "--in-flight", "0"],
        "--in-flight must be 1 to 1024, got 0",
    )
    .await;
    check_fails(
        &["bench", "storage", "--dir", path, "--in-flight", "1025"],
        "--in-flight must be 1 to 1024, got 1025",
    )
    .await;
    check_fails(&["bench", "storage", "--dir", path, "--rate", "0"], "--rate must be above 0").await;
    check_fails(&["bench", "storage", "--dir", path, "--rate", "-5"], "--rate must be above 0").await;
    let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(made.is_empty(), "refused before anything is created: {made:?}");
    check_fails(&["bench", "disk", "--dir", path, "--appends", "0"], "--appends").await;
    check_fails(&["bench", "disk", "--dir", "/nonexistent/brooklet"], "not a directory").await;
}

#[tokio::test]
async fn a_record_the_broker_refuses_stops_bench_produce_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.core.limits.max_record_bytes = 64;
    let broker = TestBroker::start_with(config).await;
    let ep = broker.endpoint();
    let args = ["bench", "produce", "--topic", "t", "--records", "500", "--record-size", "100"];
    let mut all = args.to_vec();
    all.extend_from_slice(&["--broker", ep.as_str(), "--timeout", "10"]);
    check_fails(&all, "a record was not acknowledged").await;
    broker.shutdown().await;
}

async fn check_fails(args: &[&str], needle: &str) {
    check_fails_with(args, &[], needle).await;
}

async fn check_fails_with(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let out = brooklet_with(args, env).await;
    assert!(!out.success, "brooklet {args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
    // Progress lines (`bench produce   1.0 s | …`, one a second) may come
    // first on a loaded machine; the error is one line after them.
    let stderr: Vec<&str> = out.stderr.lines().filter(|l| !l.starts_with("bench ")).collect();
    assert_eq!(stderr.len(), 1, "one line of error for {args:?}: {}", out.stderr);
    assert!(stderr[0].contains(needle), "`{}` should mention `{needle}`", stderr[0]);
}

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "correct horse battery";

/// A broker serving TLS with the certificate `ca` signs, with `--auth
/// required`, the bootstrap user `admin` and `--superusers admin`; client
/// certificates of `clients` required when given.
async fn secured(dir: &Path, ca: &TestCa, clients: Option<&TestCa>) -> EmbeddedBroker {
    let config = ca.secured_config(dir.join("data"), clients, ADMIN, ADMIN_PASSWORD);
    EmbeddedBroker::start_with(config).await.expect("broker starts")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[tokio::test]
async fn bench_produce_and_consume_over_tls_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let broker = secured(dir.path(), &ca, None).await;
    let ep = broker.endpoint();
    assert!(ep.starts_with("https://"), "{ep}");
    let ca_path = path(&ca.path);
    let secure = ["--broker", ep.as_str(), "--timeout", "10", "--tls-ca", ca_path, "--user", ADMIN];
    let password = [("BROOKLET_PASSWORD", ADMIN_PASSWORD)];

    let mut args = vec!["produce", "--topic", "t", "--records", "300", "--record-size", "1024"];
    args.extend_from_slice(&secure);
    let produced = bench_json_with(&args, &password).await;
    assert_eq!(produced["records"], 300, "{produced}");
    assert_eq!(produced["bytes"], 300 * 1024);
    assert_eq!(produced["config"]["tls"], true, "{produced}");
    assert_eq!(produced["config"]["user"], ADMIN, "{produced}");
    assert_figures(&produced);
    let mut args = vec!["consume", "--topic", "t"];
    args.extend_from_slice(&secure);
    let consumed = bench_json_with(&args, &password).await;
    assert_eq!(consumed["records"], 300, "{consumed}");
    assert_eq!(consumed["config"]["tls"], true, "{consumed}");

    // Each refusal is one line, at once: with a minute's --timeout, a bench
    // that retried would outlast the harness's deadline.
    let produce = |extra: &[&str]| -> Vec<String> {
        let args = ["bench", "produce", "--topic", "t", "--records", "10", "--broker", ep.as_str()];
        let args = args.iter().chain(&["--timeout", "60"]).chain(extra);
        args.map(|a| a.to_string()).collect()
    };
    let check = |args: Vec<String>, env: &'static [(&'static str, &'static str)], needle: &'static str| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check_fails_with(&args, env, needle).await;
    };
    const PASSWORD: &[(&str, &str)] = &[("BROOKLET_PASSWORD", ADMIN_PASSWORD)];
    const WRONG: &[(&str, &str)] = &[("BROOKLET_PASSWORD", "wrong")];
    let with_ca = ["--tls-ca", ca_path, "--user", ADMIN];
    check(produce(&with_ca), WRONG, "invalid user name or password").await;
    check(produce(&with_ca), &[], "needs its password in BROOKLET_PASSWORD").await;
    check(produce(&with_ca[..2]), PASSWORD, "authentication required").await;
    // Without --tls-ca the system's roots do not know the test CA.
    check(produce(&with_ca[2..]), PASSWORD, "is not trusted (UnknownIssuer): pass its CA with --tls-ca FILE")
        .await;
    check(produce(&["--tls-client-cert", ca_path]), PASSWORD, "--tls-client-key").await;
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bench_e2e_over_mutual_tls_authenticates_as_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let clients = TestCa::new(dir.path(), "clients");
    let broker = secured(dir.path(), &ca, Some(&clients)).await;
    let ep = broker.endpoint();
    let ca_path = path(&ca.path);
    let admin = clients.client("admin", ADMIN);
    let nobody = clients.client("nobody", "nobody");
    let secure = |cert: &CertFiles| -> Vec<String> {
        let flags = ["--broker", ep.as_str(), "--timeout", "10", "--tls-ca", ca_path];
        let mut flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        flags.extend(["--tls-client-cert".into(), path(&cert.cert).into()]);
        flags.extend(["--tls-client-key".into(), path(&cert.key).into()]);
        flags
    };

    let flags = secure(&admin);
    let mut args = vec!["e2e", "--topic", "e", "--records", "200"];
    args.extend(flags.iter().map(String::as_str));
    let e2e = bench_json(&args).await;
    assert_eq!(e2e["acked"], 200, "{e2e}");
    assert!(number(&e2e, "records") >= 200.0, "consumers received every record: {e2e}");
    assert_eq!(e2e["config"]["tls"], true, "{e2e}");
    assert!(e2e["config"]["user"].is_null(), "no password: the certificate names the user: {e2e}");

    // A certificate the CA signed, of a user no ACL allows: denied.
    let flags = secure(&nobody);
    let mut args = vec!["bench", "produce", "--topic", "e", "--records", "10"];
    args.extend(flags.iter().map(String::as_str));
    check_fails(&args, "nobody").await;
    broker.shutdown().await.unwrap();
}
