//! The `brooklet` binary end to end: a real `serve` child process and the
//! client commands against it, through a restart.

use std::process::Stdio;

use brooklet_tests::{
    BrokerProcess as Server, DEADLINE, Finished as Output, TestBroker, brooklet_bin, brooklet_command,
    eventually, finish, finish_with_input,
};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

async fn brooklet(endpoint: &str, args: &[&str], stdin: &str) -> Output {
    let mut command = brooklet_command(args);
    command.args(["--broker", endpoint, "--timeout", "5"]);
    finish_with_input(command, stdin).await
}

async fn ok(endpoint: &str, args: &[&str], stdin: &str) -> String {
    let out = brooklet(endpoint, args, stdin).await;
    assert!(out.success, "brooklet {args:?} failed: {}", out.stderr);
    out.stdout
}

async fn fails(endpoint: &str, args: &[&str], needle: &str) {
    let out = brooklet(endpoint, args, "").await;
    assert!(!out.success, "brooklet {args:?} should fail");
    let stderr = out.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "one line of error: {stderr}");
    assert!(stderr.contains(needle), "`{stderr}` should mention `{needle}`");
}

#[tokio::test]
async fn serve_create_produce_consume_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let ep = server.endpoint.clone();

    let created = ok(&ep, &["topic", "create", "orders", "--partitions", "2"], "").await;
    assert!(created.contains("created topic orders with 2 partitions"), "{created}");
    let produced = ok(&ep, &["produce", "orders", "--partition", "1"], "first\nsecond\nthird\n").await;
    assert_eq!(produced.trim(), "3 records acknowledged (durable)");
    let keyed = ok(&ep, &["produce", "orders", "--key-separator", "=", "--acks", "written"], "k=v\n").await;
    assert_eq!(keyed.trim(), "1 record acknowledged (written)");
    let key_partition = brooklet_proto::partitioner::partition_for_key(b"k", 2);

    // A `written` record becomes readable once the sync its append started
    // completes, which may be after the producer has its answer.
    let records: Vec<serde_json::Value> = eventually("the written record to be readable", || {
        let ep = ep.clone();
        async move {
            let json = ok(&ep, &["consume", "orders", "--format", "json"], "").await;
            let records: Vec<serde_json::Value> =
                json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            (records.len() == 4).then_some(records)
        }
    })
    .await;
    let text = ok(&ep, &["consume", "orders", "--partition", "1"], "").await;
    let expected: &[&str] =
        if key_partition == 1 { &["first", "second", "third", "v"] } else { &["first", "second", "third"] };
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);

    let keyed: Vec<_> = records.iter().filter(|r| r["key"] == "k").collect();
    assert_eq!(keyed.len(), 1);
    assert_eq!(keyed[0]["value"], "v");
    assert_eq!(keyed[0]["partition"], key_partition);
    assert!(keyed[0]["timestamp"].as_i64().unwrap() > 0);
    assert!(keyed[0]["headers"].as_array().unwrap().is_empty());
    let first = records.iter().find(|r| r["value"] == "first").unwrap();
    assert_eq!((first["partition"].as_u64(), first["offset"].as_u64()), (Some(1), Some(0)));

    // A group reads two records, commits them, and resumes after them.
    let part = ok(&ep, &["consume", "orders", "--partition", "1", "--group", "g", "--count", "2"], "").await;
    assert_eq!(part.lines().collect::<Vec<_>>(), ["first", "second"]);
    let rest = ok(&ep, &["consume", "orders", "--partition", "1", "--group", "g"], "").await;
    assert_eq!(rest.lines().next(), Some("third"));
    let from = ok(&ep, &["consume", "orders", "--partition", "1", "--from", "1", "--count", "1"], "").await;
    assert_eq!(from.trim(), "second");

    server.terminate().await;
    let server = Server::start(dir.path()).await;
    let ep = server.endpoint.clone();
    let listed = ok(&ep, &["topic", "list"], "").await;
    assert!(listed.contains("orders"), "{listed}");
    let described = ok(&ep, &["topic", "describe", "orders"], "").await;
    assert!(described.contains("2 partitions"), "{described}");
    let text = ok(&ep, &["consume", "orders", "--partition", "1"], "").await;
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "records survive a restart");
    let rest = ok(&ep, &["consume", "orders", "--partition", "1", "--group", "g"], "").await;
    assert!(rest.is_empty(), "the group's committed offset survives a restart: {rest}");

    // Fire and forget reports records sent; the broker still appends them
    // (the producer waits for its answers before exiting), readable once
    // the sync that follows completes.
    let fired = ok(&ep, &["produce", "orders", "--partition", "0", "--acks", "none"], "fire\n").await;
    assert_eq!(fired.trim(), "1 record sent, not acknowledged (none)");
    eventually("the fire-and-forget record to be readable", || {
        let ep = ep.clone();
        async move {
            let text = ok(&ep, &["consume", "orders", "--partition", "0"], "").await;
            (text.lines().last() == Some("fire")).then_some(())
        }
    })
    .await;

    let deleted = ok(&ep, &["topic", "delete", "orders"], "").await;
    assert!(deleted.contains("deleted topic orders"));
    server.terminate().await;
}

#[tokio::test]
async fn client_commands_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let ep = server.endpoint.clone();
    // A missing topic: the hint is the command that creates it.
    let missing = "topic \"missing\" does not exist: create it first (brooklet topic create missing)";
    fails(&ep, &["consume", "missing"], missing).await;
    fails(&ep, &["topic", "describe", "missing"], missing).await;
    let out = brooklet(&ep, &["produce", "missing"], "a\n").await;
    assert!(!out.success, "producing to a missing topic fails");
    assert_eq!(out.stderr.trim().lines().count(), 1, "one line of error: {}", out.stderr);
    assert!(out.stderr.contains(missing), "{}", out.stderr);
    fails(&ep, &["topic", "create", "bad name"], "name").await;
    fails(&ep, &["topic", "create", "t", "--config", "retention=1"], "retention").await;
    ok(&ep, &["topic", "create", "t"], "").await;
    fails(&ep, &["topic", "create", "t"], "already exists").await;
    let altered = ok(&ep, &["topic", "alter", "t", "--config", "retention.ms=1000"], "").await;
    assert_eq!(altered.trim(), "altered topic t: retention.ms=1000");
    fails(&ep, &["topic", "alter", "t", "--config", "retention.ms=soon"], "retention.ms").await;
    let restored = ok(&ep, &["topic", "alter", "t", "--delete-config", "retention.ms"], "").await;
    assert_eq!(restored.trim(), "altered topic t: defaults");
    fails(&ep, &["consume", "t", "--partition", "3"], "partition 3").await;
    let out = brooklet(&ep, &["produce", "t", "--partition", "4"], "a\nb\n").await;
    assert!(!out.success);
    // Nothing acknowledged: no guarantee to name.
    assert!(out.stderr.contains("0 of 1 record acknowledged; first failure: "), "{}", out.stderr);
    server.terminate().await;

    // Nothing listens there any more.
    fails(&ep, &["topic", "list"], "cannot reach the broker").await;
}

#[tokio::test]
async fn consumer_groups_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let ep = server.endpoint.clone();
    ok(&ep, &["topic", "create", "jobs", "--partitions", "3"], "").await;
    ok(&ep, &["produce", "jobs", "--key-separator", ":"], "a:1\nb:2\nc:3\nd:4\ne:5\nf:6\n").await;

    // A member of the group reads what is there, commits it and leaves.
    let first = ok(&ep, &["consume", "jobs", "--group", "billing", "--count", "4"], "").await;
    assert_eq!(first.lines().count(), 4);
    let rest = ok(&ep, &["consume", "jobs", "--group", "billing"], "").await;
    let mut all: Vec<&str> = first.lines().chain(rest.lines()).collect();
    all.sort_unstable();
    assert_eq!(all, ["1", "2", "3", "4", "5", "6"], "each record once across the two runs");
    assert!(ok(&ep, &["consume", "jobs", "--group", "billing"], "").await.is_empty());

    let listed = ok(&ep, &["group", "list"], "").await;
    assert!(listed.lines().any(|l| l.starts_with("billing") && l.contains("empty")), "{listed}");
    let described = ok(&ep, &["group", "describe", "billing"], "").await;
    assert!(described.contains("group billing is empty"), "{described}");
    assert!(described.contains("total lag 0"), "{described}");
    assert_eq!(described.lines().filter(|l| l.starts_with("jobs")).count(), 3, "{described}");

    let reset =
        ok(&ep, &["group", "reset-offsets", "billing", "--topic", "jobs", "--to", "earliest"], "").await;
    assert_eq!(reset.lines().filter(|l| l.starts_with("jobs")).count(), 3, "{reset}");
    let described = ok(&ep, &["group", "describe", "billing"], "").await;
    assert!(described.contains("total lag 6"), "{described}");
    let again = ok(&ep, &["consume", "jobs", "--group", "billing"], "").await;
    assert_eq!(again.lines().count(), 6, "a reset group reads everything again");

    ok(&ep, &["group", "reset-offsets", "billing", "--topic", "jobs", "--to", "2999-01-01T00:00:00Z"], "")
        .await;
    assert!(ok(&ep, &["group", "describe", "billing"], "").await.contains("total lag 0"));
    fails(&ep, &["group", "reset-offsets", "billing", "--topic", "jobs", "--to", "soon"], "RFC 3339").await;

    let status = ok(&ep, &["status"], "").await;
    assert!(status.starts_with("brooklet "), "{status}");
    let disk = status.lines().find(|l| l.starts_with("data dir ")).unwrap_or_default();
    assert!(disk.contains("iB used, ") || disk.contains(" B used, "), "binary units: {status}");
    assert!(
        status.lines().any(|l| l.starts_with("jobs") && l.split_whitespace().nth(2) == Some("6")),
        "{status}"
    );
    assert!(status.lines().any(|l| l.starts_with("billing") && l.ends_with(" 0")), "{status}");
    let listeners = format!("listeners: grpc {}", ep.trim_start_matches("http://"));
    assert!(status.lines().any(|l| l.starts_with(&listeners)), "{status}");

    ok(&ep, &["group", "delete", "billing"], "").await;
    fails(&ep, &["group", "describe", "billing"], "does not exist").await;
    server.terminate().await;
}

/// Runs `brooklet` with `args` and extra environment, without a broker.
async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = brooklet_command(args);
    command.envs(env.iter().copied());
    finish(command.spawn().expect("brooklet runs")).await
}

#[tokio::test]
async fn settings_come_from_flags_then_environment_then_file_then_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brooklet.toml");
    std::fs::write(
        &file,
        "cache_mb = 128\nmax_connections = 7\nlisten = \"127.0.0.1:7333\"\nconsole = false\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = run_with_env(
        &["serve", "--config", file, "--listen", "127.0.0.1:7444", "--print-config"],
        &[("BROOKLET_MAX_CONNECTIONS", "9")],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"cache_mb = 128"), "from the file: {}", out.stdout);
    assert!(lines.contains(&"max_connections = 9"), "the environment beats the file: {}", out.stdout);
    assert!(lines.contains(&"listen = \"127.0.0.1:7444\""), "a flag beats both: {}", out.stdout);
    assert!(lines.contains(&"max_partitions = 1024"), "a default otherwise: {}", out.stdout);
    assert!(lines.contains(&"console = \"off\""), "a boolean reads as on or off: {}", out.stdout);
    for (flag, shown) in [("off", "off"), ("on", "on"), ("false", "off")] {
        let out = run_with_env(&["serve", "--console", flag, "--print-config"], &[]).await;
        assert!(out.success, "--console {flag}: {}", out.stderr);
        assert!(out.stdout.contains(&format!("console = \"{shown}\"")), "--console {flag}: {}", out.stdout);
    }

    // An unknown key or a bad value stops start-up with exit code 2, naming it.
    for (text, needle) in
        [("cache_mbb = 1\n", "unknown key `cache_mbb`"), ("cache_mb = \"lots\"\n", "cache-mb")]
    {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = run_with_env(&["serve", "--config", bad.to_str().unwrap()], &[]).await;
        assert!(!out.success);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(needle), "{}", out.stderr);
    }
    let exit = Command::new(brooklet_bin())
        .args(["serve", "--config", dir.path().join("missing.toml").to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(2), "a missing config file is a usage error");
}

#[tokio::test]
async fn broker_flags_go_before_or_after_the_subcommand_or_in_the_environment() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let ep = ep.as_str();

    let before = run_with_env(&["--broker", ep, "--timeout", "5", "topic", "create", "early"], &[]).await;
    assert!(before.success, "{}", before.stderr);
    assert!(before.stdout.starts_with("created topic early"), "{}", before.stdout);
    let between = run_with_env(&["topic", "--broker", ep, "list"], &[]).await;
    assert!(between.success, "{}", between.stderr);
    assert!(between.stdout.lines().any(|l| l.starts_with("early ")), "{}", between.stdout);
    let after = run_with_env(&["topic", "describe", "early", "--broker", ep, "--timeout", "5"], &[]).await;
    assert!(after.success, "{}", after.stderr);
    assert!(after.stdout.starts_with("topic early"), "{}", after.stdout);
    let from_env = run_with_env(&["status"], &[("BROOKLET_BROKER", ep)]).await;
    assert!(from_env.success, "{}", from_env.stderr);
    assert!(from_env.stdout.starts_with("brooklet "), "{}", from_env.stdout);
    // A flag beats the environment, wherever it is given.
    let env_off = [("BROOKLET_BROKER", "http://invalid.invalid:1")];
    let flag_first =
        run_with_env(&["--broker", ep, "bench", "consume", "--topic", "early", "--json"], &env_off).await;
    assert!(flag_first.success, "{}", flag_first.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&flag_first.stdout).unwrap()["records"], 0);

    // `serve` refuses them on its command line, before or after `serve`,
    // with a usage error (it would otherwise ignore them), but not from the
    // environment, which a shell may export for the client commands.
    for args in [
        &["serve", "--broker", ep, "--print-config"][..],
        &["--broker", ep, "serve", "--print-config"],
        &["--timeout", "3", "serve", "--print-config"],
    ] {
        let refused = run_with_env(args, &[]).await;
        assert_eq!(refused.code, Some(2), "{args:?}: {}{}", refused.stdout, refused.stderr);
        let stderr = refused.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("`serve` does not take --"), "{stderr}");
        assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    }
    let exported =
        run_with_env(&["serve", "--print-config"], &[("BROOKLET_BROKER", ep), ("BROOKLET_TIMEOUT", "3")])
            .await;
    assert!(exported.success, "{}", exported.stderr);
    assert!(exported.stdout.contains("listen = "), "{}", exported.stdout);
    broker.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_one_short_line_with_the_chain_in_the_debug_log() {
    // A port that refuses connections, reliably: a socket bound to it but
    // never listening. The kernel answers a connection attempt there with a
    // reset (connection refused), and while the socket stays bound (it does
    // not set SO_REUSEADDR) no other test can bind or listen on that port. A
    // port freed by dropping a listener could be taken meanwhile; port 1
    // could have a listener.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let ep = format!("http://{}", socket.local_addr().unwrap());
    let flags = ["--broker", ep.as_str(), "--timeout", "1"];
    let commands: &[&[&str]] = &[
        &["topic", "list"],
        &["topic", "create", "t"],
        &["status"],
        &["consume", "t"],
        &["group", "describe", "g"],
        &["bench", "produce", "--records", "10"],
    ];
    let runs = commands.iter().map(|args| {
        let all = [args, &flags[..]].concat();
        async move { (args.to_vec(), run_with_env(&all, &[]).await) }
    });
    // `produce` reads its records from stdin (and gives up after 5 s).
    let (mut outs, produced) =
        tokio::join!(futures::future::join_all(runs), brooklet(&ep, &["produce", "t"], "a\nb\n"));
    // Nothing acknowledged: no guarantee to name.
    let told = produced.stderr.contains("error: 0 of ")
        && produced.stderr.contains(" acknowledged; first failure: ");
    assert!(told, "{}", produced.stderr);
    outs.push((vec!["produce", "t"], produced));

    for (args, out) in outs {
        assert!(!out.success, "{args:?} should fail");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout: {}", out.stdout);
        let stderr = out.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.len() < 200, "{args:?}: a short line: {stderr}");
        assert!(
            stderr.contains(&format!("cannot reach the broker at {ep} (connection refused)")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("tonic::"), "{args:?}: {stderr}");
    }

    // The whole chain is in the debug log.
    let debug = run_with_env(
        &["topic", "list", "--log-level", "brooklet=debug"],
        &[("BROOKLET_BROKER", &ep), ("BROOKLET_TIMEOUT", "1")],
    )
    .await;
    assert!(!debug.success);
    let (log, last) = debug.stderr.trim_end().rsplit_once('\n').expect("a debug log before the error");
    assert!(log.contains("DEBUG") && log.contains("tonic::transport::Error"), "{log}");
    assert!(last.starts_with("error: cannot reach the broker at"), "{last}");
    drop(socket);
}

#[tokio::test]
async fn counts_of_one_are_singular() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let created = ok(&ep, &["topic", "create", "one"], "").await;
    assert!(created.starts_with("created topic one with 1 partition (id "), "{created}");
    let described = ok(&ep, &["topic", "describe", "one"], "").await;
    assert!(described.lines().next().unwrap().ends_with("), 1 partition"), "{described}");
    let produced = ok(&ep, &["produce", "one"], "only\n").await;
    assert_eq!(produced.trim(), "1 record acknowledged (durable)");
    fails(
        &ep,
        &["consume", "one", "--partition", "1"],
        "topic `one` has 1 partition; there is no partition 1",
    )
    .await;
    ok(&ep, &["consume", "one", "--partition", "0", "--group", "g"], "").await;
    let group = ok(&ep, &["group", "describe", "g"], "").await;
    assert!(group.starts_with("group g is empty (epoch 0), 0 members, total lag 0"), "{group}");
    // Other counts stay plural.
    let created = ok(&ep, &["topic", "create", "two", "--partitions", "2"], "").await;
    assert!(created.starts_with("created topic two with 2 partitions (id "), "{created}");
    let produced = ok(&ep, &["produce", "two"], "a\nb\n").await;
    assert_eq!(produced.trim(), "2 records acknowledged (durable)");
    broker.shutdown().await;
}

/// Runs `brooklet` against `endpoint` with a standard output whose reader is
/// already gone: its first write fails with a broken pipe, whenever it comes.
async fn with_stdout_closed(endpoint: &str, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = brooklet_command(args)
        .args(["--broker", endpoint, "--timeout", "5"])
        .stdout(writer)
        .spawn()
        .expect("brooklet runs");
    finish(child).await
}

#[tokio::test]
async fn a_closed_stdout_ends_a_command_quietly_with_success() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    ok(&ep, &["topic", "create", "wide", "--partitions", "50"], "").await;
    ok(&ep, &["produce", "wide"], "a\nb\nc\n").await;
    ok(&ep, &["consume", "wide", "--group", "g"], "").await;
    let commands: &[&[&str]] = &[
        &["topic", "describe", "wide"],
        &["topic", "list"],
        &["topic", "create", "other"],
        &["status"],
        &["group", "list"],
        &["group", "describe", "g"],
        &["consume", "wide"],
        &["bench", "produce", "--topic", "bench", "--records", "10", "--json"],
        &["bench", "consume", "--topic", "wide"],
    ];
    for args in commands {
        let out = with_stdout_closed(&ep, args).await;
        // Exit code 0 and nothing on stderr but, for a bench, its progress.
        assert!(out.success, "{args:?} exits 0 on a closed stdout, got {:?}: {}", out.code, out.stderr);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("error"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("Broken pipe"), "{args:?}: {}", out.stderr);
    }
    broker.shutdown().await;
}

/// `brooklet consume --group g | head -3`: the consumer stops at the first
/// write that fails, commits what it printed before, and exits 0.
#[tokio::test]
async fn a_consumer_whose_reader_leaves_commits_what_it_printed_and_exits_0() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    ok(&ep, &["topic", "create", "long"], "").await;
    // 200 kB of records: more than a pipe holds (64 KiB on Linux), so the
    // consumer is still writing when the reader leaves.
    let value = |i: u64| format!("{i:0>100}");
    let records: String = (0..2000).map(|i| value(i) + "\n").collect();
    ok(&ep, &["produce", "long"], &records).await;

    let mut child = brooklet_command(&["consume", "long", "--group", "g", "--broker", &ep, "--timeout", "5"])
        .spawn()
        .expect("brooklet runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for i in 0..3 {
        let line = tokio::time::timeout(DEADLINE, lines.next_line()).await.expect("a line in time").unwrap();
        assert_eq!(line, Some(value(i)));
    }
    drop(lines);
    let out = finish(child).await;
    assert!(out.success, "exits 0, got {:?}: {}", out.code, out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    let admin = brooklet_client::Admin::connect(ep.as_str()).unwrap();
    let committed = admin.fetch_offsets("g", Some("long")).await.unwrap();
    assert_eq!(committed.len(), 1, "{committed:?}");
    let printed = committed[0].offset;
    // At least the three lines read; at most what the pipe held.
    assert!((3..2000).contains(&printed), "committed {printed}");
    // The group resumes exactly after what was printed.
    let rest = ok(&ep, &["consume", "long", "--group", "g"], "").await;
    assert_eq!(rest.lines().count() as u64, 2000 - printed);
    assert_eq!(rest.lines().next(), Some(value(printed).as_str()));
    broker.shutdown().await;
}

#[tokio::test]
async fn serve_refuses_to_advertise_an_unspecified_kafka_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let common = ["serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--metrics-listen", "off"];
    let args: Vec<&str> = common.iter().copied().chain(["--kafka-listen", "0.0.0.0:0"]).collect();
    let out = run_with_env(&args, &[]).await;
    assert!(!out.success, "refused at start-up: {}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--kafka-listen 0.0.0.0:0 binds every interface; set --kafka-advertised HOST:PORT"),
        "{}",
        out.stderr
    );
    let args: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--kafka-listen", "127.0.0.1:0", "--kafka-advertised", "0.0.0.0:9092"])
        .collect();
    let out = run_with_env(&args, &[]).await;
    assert!(!out.success, "refused at start-up: {}", out.stderr);
    assert!(out.stderr.contains("`0.0.0.0:9092` is not an address clients can connect to"), "{}", out.stderr);
}

/// A second `serve` on a data directory a broker is using says so in one
/// line, and fails.
#[tokio::test]
async fn a_second_serve_on_the_same_data_directory_says_another_broker_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path()).await;
    let data = dir.path().to_str().unwrap();
    let args = ["serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--metrics-listen", "off"];
    let out = run_with_env(&args, &[]).await;
    assert_eq!(out.code, Some(1), "fails: {}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        format!("error: another broker is using the data directory {data} (its database is locked)"),
    );
    first.terminate().await;
}

/// `brooklet consume TOPIC --group g --follow` as a child process, once it
/// has printed `expected`: the child and the rest of its output.
async fn following_consumer(
    ep: &str,
    topic: &str,
    expected: &[&str],
) -> (tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) {
    let mut child =
        brooklet_command(&["consume", topic, "--group", "g", "--follow", "--broker", ep, "--timeout", "5"])
            .spawn()
            .expect("brooklet runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for expected in expected {
        let line = tokio::time::timeout(DEADLINE, lines.next_line()).await.expect("a line in time").unwrap();
        assert_eq!(line.as_deref(), Some(*expected));
    }
    (child, lines)
}

/// `kill -TERM` (`timeout`, a service manager's stop) ends `consume --group
/// --follow` as ctrl-c does: it commits what it printed, leaves the group at
/// once and exits 0, so the group's offsets can be reset right after.
#[tokio::test]
async fn sigterm_stops_a_following_group_consumer_as_ctrl_c_does() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    ok(&ep, &["topic", "create", "jobs", "--partitions", "2"], "").await;
    ok(&ep, &["produce", "jobs", "--partition", "1"], "a\nb\nc\n").await;
    let (child, lines) = following_consumer(&ep, "jobs", &["a", "b", "c"]).await;
    // All printed: the consumer is a member of g, waiting for more. Its
    // reader stays (one that leaves stops it too, see below).

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
    let out = finish(child).await;
    assert!(out.success, "exits 0 as on ctrl-c, got {:?}: {}", out.code, out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    drop(lines);

    let admin = brooklet_client::Admin::connect(ep.as_str()).unwrap();
    let committed = admin.fetch_offsets("g", Some("jobs")).await.unwrap();
    let on_1: Vec<u64> = committed.iter().filter(|c| c.partition == 1).map(|c| c.offset).collect();
    assert_eq!(on_1, [3], "what was printed is committed: {committed:?}");
    // Left at once: resetting needs a group without live members.
    let reset = ok(&ep, &["group", "reset-offsets", "g", "--topic", "jobs", "--to", "earliest"], "").await;
    assert!(reset.lines().any(|l| l.starts_with("jobs") && l.contains(" 1 ")), "{reset}");
    broker.shutdown().await;
}

/// `brooklet consume t --follow | head -1`: once `head` has its line and
/// exits, the consumer, waiting for records that do not come, notices the
/// reader is gone, commits what it printed, leaves and exits 0, without
/// waiting for a record to write.
#[tokio::test]
async fn a_following_consumer_whose_reader_leaves_ends_without_waiting_for_a_record() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    ok(&ep, &["topic", "create", "quiet"], "").await;
    ok(&ep, &["produce", "quiet"], "a\nb\n").await;
    let (child, lines) = following_consumer(&ep, "quiet", &["a", "b"]).await;
    // Both records were read, so the consumer is waiting for more, and no
    // record comes: only the reader leaving can end it.
    drop(lines);
    let out = finish(child).await;
    assert!(out.success, "exits 0, got {:?}: {}", out.code, out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    // Both records were printed, so both are committed.
    let admin = brooklet_client::Admin::connect(ep.as_str()).unwrap();
    let committed = admin.fetch_offsets("g", Some("quiet")).await.unwrap();
    assert_eq!(committed.iter().map(|c| c.offset).collect::<Vec<_>>(), [2], "{committed:?}");
    let described = ok(&ep, &["group", "describe", "g"], "").await;
    assert!(described.contains("group g is empty"), "left the group: {described}");
    broker.shutdown().await;
}
