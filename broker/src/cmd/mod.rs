//! Command-line parsing and dispatch for the `brooklet` binary.

mod acl;
mod bench;
pub mod config_file;
mod consume;
mod group;
mod produce;
mod serve;
mod status;
mod stop;
mod topic;
mod user;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Brooklet: a lightweight, self-hosted message broker.
#[derive(Debug, Parser)]
#[command(name = "brooklet", version, about)]
pub struct Cli {
    /// Log filter, e.g. `info` or `brooklet_core=debug` (RUST_LOG syntax).
    /// Default: `info` for `serve`, `warn` for the client commands, whose
    /// output is their result (their error says when the broker cannot be
    /// reached, so `brooklet_client::breaker` logs only errors).
    #[arg(long, global = true, env = "BROOKLET_LOG")]
    pub log_level: Option<String>,
    /// Log format: `text`, or `json` for one JSON object per line.
    #[arg(long, global = true, env = "BROOKLET_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    // Global, so they go before the subcommand or after it, as in kcat and
    // rpk; `serve` refuses them (see `refuse_broker_flags`).
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker.
    Serve(Box<ServeArgs>),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Append one record per line of standard input.
    Produce(ProduceArgs),
    /// Print records, one per line.
    Consume(ConsumeArgs),
    /// Measure a broker, its storage engine or the disk (MB = 10^6 bytes).
    ///
    /// `produce`, `consume` and `e2e` load a running broker; `storage` drives
    /// the storage engine in-process; `disk` measures the file system beneath
    /// it. Progress goes to stderr once a second, the summary to stdout: text,
    /// or one JSON object with --json. MB = 10^6 bytes.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Version, uptime, disk use, topics and groups with their lag.
    Status,
    /// Add, list, delete users and set their passwords (through the broker,
    /// or with --data-dir on a stopped broker's data). A new password comes
    /// from BROOKLET_NEW_PASSWORD or the first line of standard input.
    #[command(subcommand)]
    User(UserCommand),
    /// Add, list and remove access-control entries (ACLs), which say who may
    /// do what with --auth required (through the broker, or with --data-dir
    /// on a stopped broker's data).
    #[command(subcommand)]
    Acl(AclCommand),
}

/// `brooklet acl …`.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Add entries: one per operation. An entry already there is left as it is.
    Add(AclArgs),
    /// List entries, one per line, e.g. `allow User:alice write topic prefixed orders.`.
    List(AclListArgs),
    /// Remove entries: one per operation; fails if none matched.
    Remove(AclArgs),
}

/// The entries `acl add` and `acl remove` name.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("resource").args(["topic", "group", "cluster"]).required(true)))]
pub struct AclArgs {
    /// The user (`alice` or `User:alice`), or `*` for every authenticated user.
    #[arg(long, value_name = "USER")]
    pub principal: String,
    /// A topic: its name, a prefix with --prefixed, or `*` for every topic.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// A consumer group: its id, a prefix with --prefixed, or `*` for every group.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// The cluster: users, ACLs, status, idempotent producer ids.
    #[arg(long)]
    pub cluster: bool,
    /// The name is a prefix: every topic or group starting with it.
    #[arg(long)]
    pub prefixed: bool,
    /// Operations, repeated or comma-separated: read, write, create, delete,
    /// describe, alter, all.
    #[arg(long = "operation", value_name = "OP", value_delimiter = ',', required = true, value_parser = parse_acl_operation)]
    pub operations: Vec<brooklet_client::AclOperation>,
    /// Deny instead of allow (a deny wins over any allow).
    #[arg(long)]
    pub deny: bool,
    /// Work on this stopped broker's data directory instead.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The filters of `acl list`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("resource").args(["topic", "group", "cluster"])))]
pub struct AclListArgs {
    /// Only this user's entries (`*`: those for every user).
    #[arg(long, value_name = "USER")]
    pub principal: Option<String>,
    /// Only entries whose topic name or prefix is this.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Only entries whose group id or prefix is this.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Only cluster entries.
    #[arg(long)]
    pub cluster: bool,
    /// Work on this stopped broker's data directory instead.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

fn parse_acl_operation(s: &str) -> Result<brooklet_client::AclOperation, String> {
    s.parse().map_err(|e: brooklet_client::Error| e.to_string())
}

/// `brooklet user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        /// User name: letters, digits and `._-@`, 1 to 256 bytes.
        name: String,
        /// Work on this stopped broker's data directory instead.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List users.
    List {
        /// Work on this stopped broker's data directory instead.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Delete a user.
    Delete {
        /// User name.
        name: String,
        /// Work on this stopped broker's data directory instead.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Replace a user's password.
    SetPassword {
        /// User name.
        name: String,
        /// Work on this stopped broker's data directory instead.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// How client commands reach the broker.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The broker's gRPC endpoint (client commands; `serve` uses --listen).
    #[arg(long = "broker", global = true, env = "BROOKLET_BROKER", default_value = "http://127.0.0.1:7070")]
    pub url: String,
    /// Give up on a request (retries included) after this many seconds
    /// (client commands).
    #[arg(long = "timeout", global = true, value_name = "SECS", env = "BROOKLET_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
    /// Authenticate as this user (client commands; a broker run with
    /// `--auth required` demands it); the password comes from
    /// BROOKLET_PASSWORD.
    #[arg(long = "user", global = true, env = "BROOKLET_USER", value_name = "USER")]
    pub user: Option<String>,
    /// PEM CA certificates to verify an `https://` broker against (client
    /// commands; default: the system's roots).
    #[arg(long, global = true, env = "BROOKLET_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate to present to a broker that asks for one (client
    /// commands; with --tls-client-key).
    #[arg(long, global = true, env = "BROOKLET_TLS_CLIENT_CERT", value_name = "FILE")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert (client commands).
    #[arg(long, global = true, env = "BROOKLET_TLS_CLIENT_KEY", value_name = "FILE")]
    pub tls_client_key: Option<PathBuf>,
}

/// The ids of [`BrokerArgs`]' flags.
const BROKER_FLAGS: [(&str, &str); 6] = [
    ("url", "--broker"),
    ("timeout_secs", "--timeout"),
    ("user", "--user"),
    ("tls_ca", "--tls-ca"),
    ("tls_client_cert", "--tls-client-cert"),
    ("tls_client_key", "--tls-client-key"),
];

/// `serve` takes no `--broker` or `--timeout`: being global, clap accepts
/// them there, so they are refused here rather than silently ignored (a
/// `--broker` meant as the address to serve would otherwise start a broker
/// on the default one). Set by the environment they are ignored, since a
/// shell that exports `BROOKLET_BROKER` for the client commands may also run
/// `serve`.
pub fn refuse_broker_flags(matches: &clap::ArgMatches) -> Result<(), String> {
    let Some(("serve", serve)) = matches.subcommand() else { return Ok(()) };
    for (id, flag) in BROKER_FLAGS {
        if serve.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return Err(format!(
                "`serve` does not take {flag}: --broker, --timeout, --tls-ca, --tls-client-cert and \
                 --tls-client-key are for the client commands (`serve` listens at --listen, with --tls-cert)"
            ));
        }
    }
    Ok(())
}

impl BrokerArgs {
    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// `builder` with the credentials of `--user` (password from
    /// `BROOKLET_PASSWORD`) set by `set`, if a user is given.
    pub fn authenticate<B>(&self, builder: B, set: impl FnOnce(B, String, String) -> B) -> anyhow::Result<B> {
        let Some(user) = &self.user else { return Ok(builder) };
        let password = std::env::var("BROOKLET_PASSWORD")
            .map_err(|_| anyhow::anyhow!("--user {user} needs its password in BROOKLET_PASSWORD"))?;
        Ok(set(builder, user.clone(), password))
    }

    /// An admin client of `--broker`, with the TLS options, credentials and
    /// request timeout of the flags.
    pub fn admin(&self) -> anyhow::Result<brooklet_client::Admin> {
        use brooklet_client::{Admin, AdminBuilder};
        let builder =
            self.tls_on(Admin::builder(&self.url), AdminBuilder::tls)?.request_timeout(self.timeout());
        Ok(self.authenticate(builder, AdminBuilder::credentials)?.build()?)
    }

    /// The client's TLS options, if any flag asked for one.
    pub fn tls(&self) -> anyhow::Result<Option<brooklet_client::TlsOptions>> {
        let mut tls = match &self.tls_ca {
            Some(ca) => brooklet_client::TlsOptions::new().ca_file(ca),
            None => brooklet_client::TlsOptions::new(),
        };
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => tls = tls.identity_files(cert, key),
            (None, None) => {}
            _ => anyhow::bail!("--tls-client-cert and --tls-client-key go together: give both or neither"),
        }
        let asked = self.tls_ca.is_some() || self.tls_client_cert.is_some();
        Ok(asked.then_some(tls))
    }

    /// `builder` with the client's TLS options set by `tls`, if any flag
    /// asked for one.
    pub fn tls_on<B>(&self, builder: B, tls: fn(B, brooklet_client::TlsOptions) -> B) -> anyhow::Result<B> {
        Ok(match self.tls()? {
            Some(options) => tls(builder, options),
            None => builder,
        })
    }
}

/// `brooklet topic …`.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: [A-Za-z0-9._-]{1,249}.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// A config entry `key=value`; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and offsets.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Change a topic's configuration at run time.
    Alter {
        /// Topic name.
        name: String,
        /// A config entry `key=value` to set; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// A config key to return to its default; repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_config: Vec<String>,
    },
    /// Delete a topic with its records and committed offsets.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// `brooklet group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups with live members or committed offsets.
    List,
    /// Show a group's members, assignments and lag per partition.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets for a topic (only while the group
    /// has no live members).
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions to reset.
        #[arg(long)]
        topic: String,
        /// earliest, latest, an offset, or an RFC 3339 date-time such as
        /// 2026-11-26T10:00:00Z (the first offset at or after it).
        #[arg(long, value_parser = group::parse_reset_to)]
        to: brooklet_client::ResetTo,
    },
    /// Delete a group's committed offsets (only while it has no live members).
    Delete {
        /// Group id.
        group: String,
    },
}

/// `brooklet produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    pub topic: String,
    /// Append every record to this partition (default: by key, or spread).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Give every record this key.
    #[arg(long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// The guarantee to wait for: `durable` (on disk), `written` (in the
    /// broker's storage engine) or `none` (fire and forget: sent, not
    /// acknowledged).
    #[arg(long, default_value = "durable", value_parser = ["durable", "written", "none"])]
    pub acks: String,
}

/// Where `consume` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The first record in the log.
    Earliest,
    /// The end of the log: only new records.
    Latest,
    /// This offset.
    Offset(u64),
}

/// Output format of `consume`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The value, as UTF-8.
    Text,
    /// One JSON object per record.
    Json,
}

/// `brooklet consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read with this consumer group: start from its committed offsets and
    /// commit what was printed (written to stdout: a pipe's buffer counts,
    /// so take N records with `--count N`, not `| head -n N`).
    #[arg(long)]
    pub group: Option<String>,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Where to start: earliest, latest or an offset. Default: the group's
    /// committed offsets with --group, else earliest.
    #[arg(long, value_parser = parse_from)]
    pub from: Option<From>,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end of the log.
    #[arg(long)]
    pub follow: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_from(s: &str) -> Result<From, String> {
    match s {
        "earliest" => Ok(From::Earliest),
        "latest" => Ok(From::Latest),
        other => other
            .parse()
            .map(From::Offset)
            .map_err(|_| format!("`{other}` is not earliest, latest or a whole number")),
    }
}

/// `brooklet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of settings (keys: the flags' names with `_`, e.g.
    /// `cache_mb = 128`); flags and `BROOKLET_*` variables override it.
    #[arg(long, env = "BROOKLET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Directory holding the broker's data.
    #[arg(long, env = "BROOKLET_DATA_DIR", default_value = "./brooklet-data")]
    pub data_dir: PathBuf,
    /// Address to listen on for gRPC.
    #[arg(long, env = "BROOKLET_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Address to serve Prometheus `/metrics`, `/healthz`, `/readyz` and
    /// the web console (`/console/`) on over HTTP, or `off`.
    #[arg(long, env = "BROOKLET_METRICS_LISTEN", default_value = "127.0.0.1:7071", value_name = "ADDR|off", value_parser = parse_metrics_listen)]
    pub metrics_listen: MetricsListen,
    /// Serve the web console at `/console/` on the metrics listener: `on`
    /// or `off` (also `true` or `false`). Without `--auth required` it stays
    /// on a loopback address unless `--allow-insecure`.
    #[arg(long, env = "BROOKLET_CONSOLE", default_value = "on", value_name = "on|off", action = clap::ArgAction::Set, hide_possible_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub console: bool,
    /// Most partitions a topic may have.
    #[arg(long, env = "BROOKLET_MAX_PARTITIONS", default_value_t = 1024)]
    pub max_partitions: u32,
    /// Largest record accepted (key + value + headers), in bytes.
    #[arg(long, env = "BROOKLET_MAX_RECORD_BYTES", default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// Storage cache size in MiB.
    #[arg(long, env = "BROOKLET_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,
    /// The guarantee of a produce that asks for none, for topics without a
    /// `flush.mode`: `durable` (flushed and fdatasync'd before the ack) or
    /// `written`.
    #[arg(long, env = "BROOKLET_DURABILITY", default_value = "durable", value_parser = ["durable", "written"])]
    pub durability: String,
    /// Refuse produce requests while the data directory's disk has less than
    /// this many MiB free (0: never), so storage never runs out mid-write.
    #[arg(long, env = "BROOKLET_MIN_FREE_MB", default_value_t = 64)]
    pub min_free_mb: u64,
    /// How long group commit may hold a sync, in ms, for more durable
    /// produces to share it (0: sync at once; produces that arrive during a
    /// sync share the next one anyway). At most 1000.
    #[arg(long, env = "BROOKLET_FLUSH_MAX_DELAY_MS", default_value_t = brooklet_broker::DEFAULT_FLUSH_MAX_DELAY.as_millis() as u64)]
    pub flush_max_delay_ms: u64,
    /// Connections served at once; more are closed as they arrive.
    #[arg(long, env = "BROOKLET_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Requests one connection may have in flight; more are answered
    /// RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "BROOKLET_MAX_REQUESTS_PER_CONNECTION", default_value_t = 256)]
    pub max_requests_per_connection: usize,
    /// Connections one client address may hold on each listener; more are
    /// closed as they arrive.
    #[arg(long, env = "BROOKLET_MAX_CONNECTIONS_PER_IP", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_ip: u64,
    /// Time a new connection has to finish its TLS handshake and send its
    /// first whole request, in ms; past it, it is closed.
    #[arg(long, env = "BROOKLET_HANDSHAKE_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout_ms: u64,
    /// Close a connection with no request in flight and no bytes either way
    /// for this long, in ms.
    #[arg(long, env = "BROOKLET_CONNECTIONS_MAX_IDLE_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections_max_idle_ms: u64,
    /// Log a warning for requests slower than this, in ms (long-poll fetches
    /// excepted).
    #[arg(long, env = "BROOKLET_SLOW_REQUEST_MS", default_value_t = 1000)]
    pub slow_request_ms: u64,
    /// How often retention looks for expired records, in ms.
    #[arg(long, env = "BROOKLET_RETENTION_CHECK_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_check_ms: u64,
    /// How often settled consumer-group members heartbeat, in ms.
    #[arg(long, env = "BROOKLET_GROUP_HEARTBEAT_MS", default_value_t = 3000)]
    pub group_heartbeat_ms: u64,
    /// Session timeout of a group member that asks for none, in ms.
    #[arg(long, env = "BROOKLET_GROUP_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub group_session_timeout_ms: u64,
    /// Shortest session timeout a member may ask for, in ms.
    #[arg(long, env = "BROOKLET_GROUP_MIN_SESSION_TIMEOUT_MS", default_value_t = 1000)]
    pub group_min_session_timeout_ms: u64,
    /// Longest session timeout a member may ask for, in ms.
    #[arg(long, env = "BROOKLET_GROUP_MAX_SESSION_TIMEOUT_MS", default_value_t = 300_000)]
    pub group_max_session_timeout_ms: u64,
    /// How long a Kafka classic group that was empty waits for more
    /// members before its first generation, in ms (0: at once).
    #[arg(long, env = "BROOKLET_GROUP_INITIAL_REBALANCE_DELAY_MS", default_value_t = 300)]
    pub group_initial_rebalance_delay_ms: u64,
    /// Address to serve Kafka's wire protocol on (off unless set), so that
    /// Kafka clients produce and consume unchanged.
    #[arg(long, env = "BROOKLET_KAFKA_LISTEN", value_name = "ADDR")]
    pub kafka_listen: Option<SocketAddr>,
    /// The `HOST:PORT` Kafka clients are told to connect to (Metadata);
    /// default: the Kafka listener's address. Use an IP, not `localhost`.
    #[arg(long, env = "BROOKLET_KAFKA_ADVERTISED", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub kafka_advertised: Option<(String, u16)>,
    /// Create a topic when a Kafka client asks for its metadata and the
    /// request allows it.
    #[arg(long, env = "BROOKLET_KAFKA_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub kafka_auto_create_topics: bool,
    /// Partitions of a topic created for a Kafka client.
    #[arg(long, env = "BROOKLET_KAFKA_DEFAULT_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub kafka_default_partitions: u32,
    /// Whether clients authenticate: `none`, or `required` (gRPC with
    /// `authorization: Basic`, Kafka with SASL PLAIN or SCRAM-SHA-256/512).
    /// BROOKLET_BOOTSTRAP_USER and BROOKLET_BOOTSTRAP_PASSWORD (both or
    /// neither) create that user at start when no user exists yet.
    #[arg(long, env = "BROOKLET_AUTH", default_value = "none", value_parser = ["none", "required"])]
    pub auth: String,
    /// PEM certificate chain: serve TLS on the gRPC and Kafka listeners
    /// (with --tls-key). SIGHUP reloads it.
    #[arg(long, env = "BROOKLET_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BROOKLET_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates are verified against.
    #[arg(long, env = "BROOKLET_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Ask clients for a certificate: `none`, `optional` (verified when
    /// given) or `required`. Default: `required` with --tls-client-ca, else
    /// `none`.
    #[arg(long, env = "BROOKLET_TLS_CLIENT_AUTH", value_name = "MODE", value_parser = ["none", "optional", "required"])]
    pub tls_client_auth: Option<String>,
    /// Which name of a client certificate is its user when both
    /// `--tls-client-auth required` and `--auth required` are set: `cn`
    /// (the subject's common name, else the first DNS name among the subject
    /// alternative names), `san-dns` or `san-email` (the first of those).
    #[arg(long, env = "BROOKLET_TLS_PRINCIPAL_FROM", default_value = "cn", value_name = "FIELD", value_parser = ["cn", "san-dns", "san-email"])]
    pub tls_principal_from: String,
    /// Serve --listen or --kafka-listen on a non-loopback address without
    /// TLS and `--auth required` (refused otherwise).
    #[arg(long, env = "BROOKLET_ALLOW_INSECURE")]
    pub allow_insecure: bool,
    /// Users allowed everything whatever the ACLs say, comma-separated
    /// (with `--auth required`, nothing else is allowed that no ACL allows).
    #[arg(long, env = "BROOKLET_SUPERUSERS", value_delimiter = ',', value_name = "USERS")]
    pub superusers: Vec<String>,
}

/// `--kafka-advertised`: `HOST:PORT`, the host not `localhost`.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) =
        s.rsplit_once(':').ok_or_else(|| format!("expected HOST:PORT, e.g. 127.0.0.1:9092, got `{s}`"))?;
    let port: u16 = port.parse().map_err(|e| format!("port `{port}`: {e}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
        return Err(format!("`{host}`: advertise an address clients resolve the same way, e.g. 127.0.0.1"));
    }
    Ok((host.to_owned(), port))
}

/// `--metrics-listen`: an address, or `off`.
#[derive(Clone, Copy, Debug)]
pub struct MetricsListen(pub Option<SocketAddr>);

fn parse_metrics_listen(s: &str) -> Result<MetricsListen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(MetricsListen(None));
    }
    s.parse()
        .map(|a| MetricsListen(Some(a)))
        .map_err(|e| format!("expected an address such as 127.0.0.1:7071, or `off`: {e}"))
}

/// Standard output was closed by its reader, as `brooklet topic describe t
/// | head -3` does once it has its lines: the command stops there and the
/// process exits 0 without a message, as ripgrep does.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// What a command prints its result with: `writeln!(stdout(), …)?` returns
/// an error where `println!` would panic, [`StdoutClosed`] for a closed pipe.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout())
}

/// Standard output, written with `write!` and `writeln!`.
#[derive(Debug)]
pub struct Stdout(std::io::Stdout);

impl Stdout {
    /// What `write!` and `writeln!` call.
    pub fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
        std::io::Write::write_fmt(&mut self.0, args).map_err(output_error)
    }
}

/// A failed write to standard output, as the command's error.
pub fn output_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

/// `n` and `noun`, singular for one: `1 partition`, `3 partitions`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("{n} {noun}") } else { format!("{n} {noun}s") }
}

/// Creates the data directory `dir` if it does not exist yet, as `serve`
/// and the offline commands that write (`user add`, `acl add`) do.
pub fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Runs `work` on the core of a stopped broker's data directory `dir`
/// (`user` and `acl` with `--data-dir`), then flushes and closes it. With
/// `create`, a missing directory is made first (the first user and entries
/// come before the first start); otherwise it is an error.
pub async fn offline_core(
    dir: &std::path::Path,
    create: bool,
    work: impl AsyncFnOnce(&brooklet_core::Core) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if create {
        create_data_dir(dir)?;
    }
    anyhow::ensure!(dir.is_dir(), "data directory {} does not exist", dir.display());
    let tasks = tokio_util::task::TaskTracker::new();
    let core = brooklet_core::Core::open(&brooklet_core::CoreConfig::new(dir.to_path_buf()), None, &tasks)
        .with_context(|| format!("cannot open {} (is a broker running on it?)", dir.display()))?;
    let result = work(&core).await;
    core.flush()?;
    drop(core);
    tasks.close();
    tasks.wait().await;
    result
}

/// Logs go to stderr so that `consume` can print records on stdout.
pub fn init_tracing(cli: &Cli) {
    // A client command reports its failure itself, in one line: the client's
    // circuit breakers, which log each change of state as a warning, would
    // say it again.
    let default =
        if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn,brooklet_client::breaker=error" };
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log_level.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let broker = cli.broker;
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Topic(command) => topic::run(command, broker).await,
        Command::Produce(args) => produce::run(args, broker).await,
        Command::Consume(args) => consume::run(args, broker).await,
        Command::Bench(command) => bench::run(command, broker).await,
        Command::Group(command) => group::run(command, broker).await,
        Command::Status => status::run(broker).await,
        Command::User(command) => user::run(command, broker).await,
        Command::Acl(command) => acl::run(command, broker).await,
    }
}

#[cfg(test)]
mod kafka_flag_tests {
    use super::parse_host_port;

    #[test]
    fn kafka_advertised_is_host_and_port_and_never_localhost() {
        assert_eq!(parse_host_port("127.0.0.1:9092"), Ok(("127.0.0.1".to_owned(), 9092)));
        assert_eq!(parse_host_port("[::1]:9092"), Ok(("::1".to_owned(), 9092)));
        assert_eq!(parse_host_port("broker.example:19092"), Ok(("broker.example".to_owned(), 19092)));
        for bad in ["localhost:9092", "LOCALHOST:1", ":9092", "127.0.0.1", "127.0.0.1:99999"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }
}
