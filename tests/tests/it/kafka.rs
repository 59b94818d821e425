//! Kafka's wire protocol: a real Kafka client (kafka-python) produces to and
//! consumes from the broker unchanged.

use std::path::PathBuf;
use std::process::Stdio;

use brooklet_broker::{Config, EmbeddedBroker};
use brooklet_tests::DEADLINE;

/// Whether `python3` with kafka-python can run. `.ci/run` installs it and
/// sets `BROOKLET_REQUIRE_KAFKA_PYTHON=1`, so that CI fails instead of
/// skipping; elsewhere a missing client skips the test loudly.
async fn kafka_python_available() -> bool {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    let problem = match probe {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!("kafka-python is not installed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => format!("python3 cannot run: {e}"),
    };
    if std::env::var_os("BROOKLET_REQUIRE_KAFKA_PYTHON").is_some_and(|v| v == "1") {
        panic!("BROOKLET_REQUIRE_KAFKA_PYTHON=1 but {problem}");
    }
    eprintln!(
        "\n*** SKIPPED: {problem}; install it with `python3 -m pip install kafka-python==3.0.12` \
         (CI requires it) ***\n"
    );
    false
}

#[tokio::test]
async fn kafka_python_produces_and_consumes_in_order() {
    if !kafka_python_available().await {
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
