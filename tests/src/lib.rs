//! The one harness every Brooklet integration test goes through: a real
//! broker started in-process on 127.0.0.1 port 0 with its own data directory,
//! plus gRPC clients for it and a way to wait for a condition with a deadline.

pub mod certs;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brooklet_broker::{Config, EmbeddedBroker};
use brooklet_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::consumer_service_client::ConsumerServiceClient;
use pb::group_service_client::GroupServiceClient;
use pb::producer_service_client::ProducerServiceClient;
use tonic::transport::Channel;

/// Generous: the deadline only matters when a test is about to fail, and the
/// test machine may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running broker and a channel to it.
#[derive(Debug)]
pub struct TestBroker {
    broker: EmbeddedBroker,
    channel: Channel,
    /// Kept so that a restart can reopen the same data.
    dir: Option<PathBuf>,
}

impl TestBroker {
    /// A broker in a fresh temporary directory, removed on shutdown.
    pub async fn start() -> TestBroker {
        let broker = EmbeddedBroker::start().await.expect("embedded broker starts");
        TestBroker::connect(broker, None).await
    }

    /// A broker storing its data in `dir`, which outlives it.
    pub async fn start_in(dir: &Path) -> TestBroker {
        TestBroker::start_with(Config::new(dir)).await
    }

    /// A broker with a custom configuration.
    pub async fn start_with(config: Config) -> TestBroker {
        let dir = config.core.data_dir.clone();
        let broker = EmbeddedBroker::start_with(config).await.expect("embedded broker starts");
        TestBroker::connect(broker, Some(dir)).await
    }

    async fn connect(broker: EmbeddedBroker, dir: Option<PathBuf>) -> TestBroker {
        let channel = Channel::from_shared(broker.endpoint())
            .expect("valid endpoint")
            .connect()
            .await
            .expect("broker accepts connections");
        TestBroker { broker, channel, dir }
    }

    /// Shuts the broker down gracefully and starts a new one on the same data.
    pub async fn restart(self) -> TestBroker {
        let dir = self.dir.clone().expect("restart needs a broker started with start_in");
        self.broker.shutdown().await.expect("clean shutdown");
        TestBroker::start_in(&dir).await
    }

    /// Stops the broker and waits for storage to close.
    pub async fn shutdown(self) {
        self.broker.shutdown().await.expect("clean shutdown");
    }

    /// The gRPC endpoint.
    pub fn endpoint(&self) -> String {
        self.broker.endpoint()
    }

    /// Where the broker serves `/metrics`, `/healthz` and `/readyz`, if its
    /// config set `metrics_listen`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.broker.metrics_addr()
    }

    /// Where the broker serves Kafka's wire protocol, if its config set
    /// `kafka_listen`.
    pub fn kafka_addr(&self) -> Option<std::net::SocketAddr> {
        self.broker.kafka_addr()
    }

    /// A raw channel to the broker.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The admin service.
    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    /// The producer service.
    pub fn producer(&self) -> ProducerServiceClient<Channel> {
        ProducerServiceClient::new(self.channel.clone())
    }

    /// The consumer service.
    pub fn consumer(&self) -> ConsumerServiceClient<Channel> {
        ConsumerServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// The group service.
    pub fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }

    /// Creates a topic, panicking on failure.
    pub async fn create_topic(&self, name: &str, partitions: u32) {
        self.admin()
            .create_topic(pb::CreateTopicRequest {
                name: name.into(),
                partitions,
                config: Default::default(),
            })
            .await
            .expect("topic created");
    }
}

/// A produce record with a value and optional partition.
pub fn record(value: &str, partition: Option<u32>) -> pb::ProduceRecord {
    pb::ProduceRecord { partition, value: value.to_owned().into(), ..Default::default() }
}

/// Every (offset, value) in a fetch response, offsets computed from the batch.
pub fn offsets_and_values(batches: &[pb::RecordBatch]) -> Vec<(u64, String)> {
    batches
        .iter()
        .flat_map(|b| {
            b.records.iter().map(move |r| {
                (b.base_offset + u64::from(r.offset_delta), String::from_utf8_lossy(&r.value).into_owned())
            })
        })
        .collect()
}

/// Runs `check` until it returns `Some`, or panics with `what` once the
/// deadline passes. It re-checks every 10 ms: for conditions that no
/// notification announces, such as a child process starting to listen.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut retry = tokio::time::interval(Duration::from_millis(10));
    loop {
        retry.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
    }
}

/// A port on 127.0.0.1 that is bound but never listens: connections to it
/// are refused, as by a broker that has stopped. Unlike a port freed by
/// dropping a listener, it stays this test's while the value lives: the OS
/// hands a bound port to no other socket that binds port 0 (in this test
/// binary, where tests run in parallel, or any other process), so nothing
/// else can start listening on it.
///
/// The socket has `SO_REUSEADDR`, as every listener std and Tokio bind has,
/// so a broker told to listen on exactly [`addr`](Self::addr) (say, as its
/// `metrics_listen`) can bind it beside this one; once that broker is gone,
/// connections are refused again and the port is still held.
#[derive(Debug)]
pub struct ReservedPort {
    /// Held only to keep the port bound.
    _socket: tokio::net::TcpSocket,
    addr: std::net::SocketAddr,
}

impl ReservedPort {
    /// Binds a port on 127.0.0.1 chosen by the OS, without listening.
    pub fn new() -> ReservedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("bind a loopback port");
        let addr = socket.local_addr().expect("the bound address");
        ReservedPort { _socket: socket, addr }
    }

    /// The reserved address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The address as a gRPC endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        ReservedPort::new()
    }
}

/// `program args…` run in `tests/kafka` (see [`kafka_scripts`]), its
/// stdin, stdout and stderr piped, killed if dropped.
pub fn kafka_script(program: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(program)
        .args(args)
        .current_dir(kafka_scripts())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"))
}

/// A broker with a Kafka listener, in a temporary directory: the directory
/// (kept while the test runs), the broker, the Kafka address and an admin
/// client.
pub async fn start_kafka() -> (tempfile::TempDir, TestBroker, String, brooklet_client::Admin) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = TestBroker::start_with(config).await;
    let addr = broker.kafka_addr().expect("a Kafka listener").to_string();
    let admin = brooklet_client::Admin::connect(broker.endpoint()).unwrap();
    (dir, broker, addr, admin)
}

/// A running script's stdout, line by line.
pub type ScriptLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Splits a script started with piped stdin and stdout into its stdin, its
/// stdout's lines, and the rest.
pub fn pipes(
    mut child: tokio::process::Child,
) -> (tokio::process::ChildStdin, ScriptLines, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let stdin = child.stdin.take().expect("stdin piped");
    let stdout = child.stdout.take().expect("stdout piped");
    (stdin, tokio::io::BufReader::new(stdout).lines(), child)
}

/// A running script's next line, waited for up to [`DEADLINE`].
pub async fn next_line(lines: &mut ScriptLines) -> String {
    tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the script prints its next line in time")
        .unwrap()
        .expect("the script prints another line (if it failed, `rest` shows its stderr)")
}

/// A script's remaining lines once it exits; fails with its stderr if it
/// did not exit 0.
pub async fn rest(mut lines: ScriptLines, child: tokio::process::Child) -> Vec<String> {
    let done = finish(child).await;
    let mut out = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        out.push(line);
    }
    assert!(done.success, "the script failed ({:?}):\nstdout: {out:?}\nstderr:\n{}", done.code, done.stderr);
    out
}

/// What a finished child process did, its output as text.
#[derive(Debug)]
pub struct Finished {
    /// It exited with status 0.
    pub success: bool,
    /// Its exit code, if it exited (not killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Waits, up to [`DEADLINE`], for `child` (spawned with piped output) to
/// exit, and collects what it printed.
pub async fn finish(child: tokio::process::Child) -> Finished {
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("finishes in time")
        .expect("its output is read");
    Finished {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `brooklet` binary of this build, built (or found up to date) once per
/// test process so a test never runs a stale binary.
pub fn brooklet_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        // The test binary is target/<profile>/deps/it-<hash>.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--quiet", "-p", "brooklet", "--bin", "brooklet"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the brooklet binary failed");
        profile_dir.join(format!("brooklet{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

/// `brooklet ARGS` as a child process: stdin closed, stdout and stderr
/// piped, killed if dropped, a backtrace if it panics, and none of the
/// client commands' settings (`BROOKLET_BROKER`, `BROOKLET_USER`,
/// `BROOKLET_TLS_CA`, ...) from the environment the tests run in.
pub fn brooklet_command(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(brooklet_bin());
    command.args(args).env("RUST_BACKTRACE", "1");
    for var in [
        "BROOKLET_BROKER",
        "BROOKLET_USER",
        "BROOKLET_PASSWORD",
        "BROOKLET_NEW_PASSWORD",
        "BROOKLET_TLS_CA",
        "BROOKLET_TLS_CLIENT_CERT",
        "BROOKLET_TLS_CLIENT_KEY",
    ] {
        command.env_remove(var);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` with `input` on its standard input, to completion.
pub async fn finish_with_input(mut command: tokio::process::Command, input: &str) -> Finished {
    use tokio::io::AsyncWriteExt;
    let mut child = command.stdin(std::process::Stdio::piped()).spawn().expect("the command runs");
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin.write_all(input.as_bytes()).await.expect("input written");
    drop(stdin);
    finish(child).await
}

/// The README's Rust snippets, compiled as doc-tests so they cannot drift
/// from the crates' APIs.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// A `brooklet serve` child process on 127.0.0.1, port chosen by the OS: the
/// real binary, for tests of the CLI and of crashes.
#[derive(Debug)]
pub struct BrokerProcess {
    child: tokio::process::Child,
    /// The broker's gRPC endpoint.
    pub endpoint: String,
}

impl BrokerProcess {
    /// Starts `brooklet serve` on `data_dir` and waits until it listens.
    pub async fn start(data_dir: &Path) -> BrokerProcess {
        BrokerProcess::start_on(data_dir, ([127, 0, 0, 1], 0).into()).await
    }

    /// As [`start`](Self::start), serving gRPC on `listen`: say, the address
    /// of a [`ReservedPort`], so that between a broker's death and the next
    /// one's start its port refuses connections rather than going to a
    /// listener of another test.
    pub async fn start_on(data_dir: &Path, listen: std::net::SocketAddr) -> BrokerProcess {
        BrokerProcess::spawn(data_dir, listen, &[]).await
    }

    /// As [`start`](Self::start), with more `serve` flags. The endpoint is
    /// `http://` whatever they say.
    pub async fn start_with(data_dir: &Path, flags: &[&str]) -> BrokerProcess {
        BrokerProcess::spawn(data_dir, ([127, 0, 0, 1], 0).into(), flags).await
    }

    async fn spawn(data_dir: &Path, listen: std::net::SocketAddr, flags: &[&str]) -> BrokerProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(brooklet_bin())
            .args(["serve", "--listen", &listen.to_string()])
            .args(flags)
            // Port 0 for metrics too: parallel tests must not share 7071.
            .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("BROOKLET_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("serve starts");
        // The broker logs the address it bound; wait for that line.
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let endpoint = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr = rest.split_whitespace().next().expect("an address");
                    return format!("http://{addr}");
                }
            }
            panic!("serve exited before listening");
        })
        .await
        .expect("serve listens in time");
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        BrokerProcess { child, endpoint }
    }

    /// Sends the signal `name` (e.g. `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status =
            std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// SIGTERM, then wait: a graceful shutdown exits 0.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("exits in time").unwrap();
        assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        tokio::time::timeout(DEADLINE, self.child.wait()).await.expect("dies in time").unwrap();
    }
}

/// A TCP proxy on 127.0.0.1 in front of a broker, for faults a real network
/// has: it can cut clients off (while blocked it drops every connection,
/// open or new), lose the broker's answers (while muted it reads them and
/// throws them away), or send new connections to another broker.
#[derive(Debug)]
pub struct Proxy {
    /// The endpoint clients use instead of the broker's.
    pub endpoint: String,
    blocked: tokio::sync::watch::Sender<bool>,
    /// Bumped by `cut`: connections opened before end.
    cuts: tokio::sync::watch::Sender<u64>,
    muted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    upstream: std::sync::Arc<parking_lot::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

fn address(broker: &TestBroker) -> String {
    broker.endpoint().trim_start_matches("http://").to_owned()
}

impl Proxy {
    /// A proxy to `broker`.
    pub async fn start(broker: &TestBroker) -> Proxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = std::sync::Arc::new(parking_lot::Mutex::new(address(broker)));
        let muted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let (blocked, watching) = tokio::sync::watch::channel(false);
        let (cuts, cut_rx) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn({
            let (upstream, muted) = (upstream.clone(), muted.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if *watching.borrow() {
                        continue;
                    }
                    let upstream = upstream.lock().clone();
                    let (mut watching, muted) = (watching.clone(), muted.clone());
                    let mut cut_rx = cut_rx.clone();
                    let generation = *cut_rx.borrow();
                    tokio::spawn(async move {
                        let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else { return };
                        let (mut client_read, mut client_write) = inbound.into_split();
                        let (mut broker_read, mut broker_write) = outbound.into_split();
                        let requests = tokio::io::copy(&mut client_read, &mut broker_write);
                        let answers = async {
                            let mut buf = vec![0u8; 64 << 10];
                            loop {
                                let n = broker_read.read(&mut buf).await?;
                                if n == 0 {
                                    return Ok::<_, std::io::Error>(());
                                }
                                if !muted.load(Ordering::Acquire) {
                                    client_write.write_all(&buf[..n]).await?;
                                }
                            }
                        };
                        tokio::select! {
                            _ = requests => {}
                            _ = answers => {}
                            _ = watching.wait_for(|blocked| *blocked) => {}
                            _ = cut_rx.wait_for(|g| *g != generation) => {}
                        }
                    });
                }
            }
        });
        Proxy { endpoint, blocked, cuts, muted, upstream, task }
    }

    /// Sends new connections to `broker`.
    pub fn redirect(&self, broker: &TestBroker) {
        *self.upstream.lock() = address(broker);
    }

    /// While blocked, every connection is dropped, open or new.
    pub fn block(&self, blocked: bool) {
        self.blocked.send_replace(blocked);
    }

    /// Drops every open connection once; new ones go through.
    pub fn cut(&self) {
        self.cuts.send_modify(|g| *g += 1);
    }

    /// While muted, the broker's answers are read and thrown away.
    pub fn mute(&self, muted: bool) {
        self.muted.store(muted, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.block(true);
        self.task.abort();
    }
}

/// A Kafka client the Kafka wire-protocol tests drive, from `tests/kafka`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KafkaClient {
    /// kafka-python, a pure-Python client, with the modules of its snappy,
    /// lz4 and zstd codecs.
    KafkaPython,
    /// confluent-kafka, Python over librdkafka.
    ConfluentKafka,
    /// kcat, the command-line client over librdkafka.
    Kcat,
    /// kafkajs, a pure-JavaScript client, installed by `npm ci` in
    /// `tests/kafka`.
    Kafkajs,
}

impl KafkaClient {
    fn name(self) -> &'static str {
        match self {
            KafkaClient::KafkaPython => "kafka-python",
            KafkaClient::ConfluentKafka => "confluent-kafka",
            KafkaClient::Kcat => "kcat",
            KafkaClient::Kafkajs => "kafkajs",
        }
    }

    fn install(self) -> &'static str {
        match self {
            KafkaClient::KafkaPython => {
                "python3 -m pip install kafka-python==3.0.12 python-snappy==0.7.3 lz4==4.4.5 zstandard==0.25.0"
            }
            KafkaClient::ConfluentKafka => "python3 -m pip install confluent-kafka==2.16.1",
            KafkaClient::Kcat => "apt-get install kcat",
            KafkaClient::Kafkajs => "npm ci --prefix tests/kafka",
        }
    }

    /// A command that succeeds only where the client can run.
    fn probe(self) -> tokio::process::Command {
        let (program, args): (&str, &[&str]) = match self {
            KafkaClient::KafkaPython => ("python3", &["-c", "import kafka, snappy, lz4.frame, zstandard"]),
            KafkaClient::ConfluentKafka => ("python3", &["-c", "import confluent_kafka"]),
            KafkaClient::Kcat => ("kcat", &["-V"]),
            KafkaClient::Kafkajs => ("node", &["-e", "require('kafkajs')"]),
        };
        let mut probe = tokio::process::Command::new(program);
        probe.args(args).current_dir(kafka_scripts()).kill_on_drop(true);
        probe
    }
}

/// `tests/kafka`: the scripts that drive Kafka clients, and kafkajs's
/// `package.json`.
pub fn kafka_scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka")
}

/// Whether `client` can run here. `.ci/run` installs every client and sets
/// `BROOKLET_REQUIRE_KAFKA_CLIENTS=1`, so that CI fails instead of
/// skipping; elsewhere a missing client skips the test loudly.
pub async fn kafka_client_available(client: KafkaClient) -> bool {
    let probe =
        client.probe().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).output();
    let problem = match tokio::time::timeout(DEADLINE, probe).await {
        Ok(Ok(out)) if out.status.success() => return true,
        Ok(Ok(out)) => {
            // The line that says what is wrong, out of a traceback or stack.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr
                .lines()
                .find(|l| l.contains("Error"))
                .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("its probe failed");
            format!("{} cannot run: {}", client.name(), reason.trim())
        }
        Ok(Err(e)) => format!("{} cannot run: {e}", client.name()),
        Err(_) => format!("{} did not answer its probe in time", client.name()),
    };
    if std::env::var_os("BROOKLET_REQUIRE_KAFKA_CLIENTS").is_some_and(|v| v == "1") {
        panic!("BROOKLET_REQUIRE_KAFKA_CLIENTS=1 but {problem}");
    }
    eprintln!("\n*** SKIPPED: {problem}; install it with `{}` (CI requires it) ***\n", client.install());
    false
}

/// `tests/console`: the script that drives the web console in a browser,
/// and playwright-core's `package.json`.
pub fn console_scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console")
}

/// The Chromium the console's browser test drives: `BROOKLET_CHROMIUM`, else
/// Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("BROOKLET_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Whether the console's browser test can run here: Chromium and
/// playwright-core (`npm ci` in `tests/console`). `.ci/run` installs both
/// and sets `BROOKLET_REQUIRE_BROWSER=1`, so that CI fails instead of
/// skipping; elsewhere a missing one skips the test loudly.
pub async fn browser_available() -> bool {
    let problem = if !chromium_path().is_file() {
        format!("{} is missing; install it with `apt-get install chromium`", chromium_path().display())
    } else {
        let probe = tokio::process::Command::new("node")
            .args(["-e", "require('playwright-core')"])
            .current_dir(console_scripts())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(DEADLINE, probe).await {
            Ok(Ok(status)) if status.success() => return true,
            _ => "playwright-core cannot be loaded; install it with `npm ci --prefix tests/console`"
                .to_string(),
        }
    };
    if std::env::var_os("BROOKLET_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
        panic!("BROOKLET_REQUIRE_BROWSER=1 but {problem}");
    }
    eprintln!("\n*** SKIPPED: {problem} (CI requires it) ***\n");
    false
}

/// `node script args…` run in `tests/console` (see [`console_scripts`]),
/// its output piped, killed if dropped.
pub fn console_script(script: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .env("BROOKLET_CHROMIUM", chromium_path())
        .current_dir(console_scripts())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("node {script} starts: {e}"))
}

/// `message` as a request carrying `user`'s Basic credentials, as a gRPC
/// client of a broker with `--auth required` sends them.
pub fn with_credentials<T>(message: T, user: &str, password: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    request.metadata_mut().insert("authorization", value.parse().expect("an ASCII header value"));
    request
}

/// Standard base64 with padding (RFC 4648), for [`with_credentials`].
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_standard_and_padded() {
        assert_eq!(super::base64(b"alice:pa:ss"), "YWxpY2U6cGE6c3M=");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"abc"), "YWJj");
        assert_eq!(super::base64(b""), "");
    }
}
