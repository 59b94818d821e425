//! `brooklet serve`: bind, run until SIGINT or SIGTERM, shut down gracefully;
//! SIGHUP reloads the TLS certificate, key and client CA.

use anyhow::Context;
use std::time::Duration;

use brooklet_broker::{
    Acks, Auth, BootstrapUser, ClientAuth, Config, ConnSettings, CoreConfig, GroupConfig, Limits, ServeError,
    Tls, TlsConfig,
};
use tokio::net::TcpListener;

use super::{ServeArgs, stdout};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.print_config {
        return print_config(&args);
    }
    let tls = tls(&args)?;
    let core = CoreConfig {
        data_dir: args.data_dir,
        limits: Limits {
            max_partitions: args.max_partitions,
            max_record_bytes: args.max_record_bytes,
            min_free_disk_bytes: args.min_free_mb.saturating_mul(1 << 20),
            max_connections: args.max_connections,
            max_requests_per_connection: args.max_requests_per_connection,
            ..Limits::default()
        },
        cache_capacity_bytes: args.cache_mb.saturating_mul(1 << 20),
        retention_check_interval: Duration::from_millis(args.retention_check_ms),
        flush_max_delay: Duration::from_millis(args.flush_max_delay_ms),
        durability: if args.durability == "written" { Acks::Written } else { Acks::Durable },
        groups: GroupConfig {
            heartbeat_interval: Duration::from_millis(args.group_heartbeat_ms),
            default_session_timeout: Duration::from_millis(args.group_session_timeout_ms),
            min_session_timeout: Duration::from_millis(args.group_min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(args.group_max_session_timeout_ms),
            initial_rebalance_delay: Duration::from_millis(args.group_initial_rebalance_delay_ms),
        },
    };
    let config = Config {
        core,
        slow_request: Duration::from_millis(args.slow_request_ms),
        metrics_listen: args.metrics_listen.0,
        console: args.console,
        kafka_listen: args.kafka_listen,
        kafka_advertised: args.kafka_advertised.clone(),
        kafka_auto_create_topics: args.kafka_auto_create_topics,
        kafka_default_partitions: args.kafka_default_partitions,
        auth: if args.auth == "required" { Auth::Required } else { Auth::None },
        tls_principal_from: args.tls_principal_from.parse().map_err(|e: String| {
            ServeError::Config(brooklet_broker::Error::invalid("tls_principal_from", e))
        })?,
        allow_insecure: args.allow_insecure,
        bootstrap_user: bootstrap_user()?,
        superusers: args.superusers.clone(),
        tls,
        connections: ConnSettings {
            handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(args.connections_max_idle_ms),
            max_per_address: usize::try_from(args.max_connections_per_ip).unwrap_or(usize::MAX),
        },
    };
    // Checked before binding; `run` checks the bound addresses again.
    config.check_start(args.listen)?;
    reload_on_sighup(config.tls.clone());
    super::create_data_dir(&config.core.data_dir)?;
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let shutdown = async {
        let signal = super::stop::signal().await;
        tracing::info!("received {signal}");
    };
    Ok(brooklet_broker::run(config, listener, shutdown).await?)
}

/// The first user, from `BROOKLET_BOOTSTRAP_USER` and
/// `BROOKLET_BOOTSTRAP_PASSWORD` (both or neither), created at start when
/// no user exists.
fn bootstrap_user() -> anyhow::Result<Option<BootstrapUser>> {
    match (std::env::var("BROOKLET_BOOTSTRAP_USER"), std::env::var("BROOKLET_BOOTSTRAP_PASSWORD")) {
        (Ok(name), Ok(password)) => Ok(Some(BootstrapUser { name, password })),
        (Err(_), Err(_)) => Ok(None),
        _ => anyhow::bail!("set both BROOKLET_BOOTSTRAP_USER and BROOKLET_BOOTSTRAP_PASSWORD, or neither"),
    }
}

/// The TLS files of `--tls-*`, loaded and checked.
fn tls(args: &ServeArgs) -> Result<Option<Tls>, ServeError> {
    let invalid =
        |message: &str| ServeError::Config(brooklet_broker::Error::invalid("tls", message.to_owned()));
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) => {
            if args.tls_client_ca.is_some() || args.tls_client_auth.is_some() {
                return Err(invalid("--tls-client-ca and --tls-client-auth need --tls-cert and --tls-key"));
            }
            return Ok(None);
        }
        _ => return Err(invalid("--tls-cert and --tls-key go together: give both or neither")),
    };
    let client_auth = match &args.tls_client_auth {
        Some(mode) => mode.parse().map_err(|e: String| invalid(&format!("--tls-client-auth: {e}")))?,
        None if args.tls_client_ca.is_some() => ClientAuth::Required,
        None => ClientAuth::None,
    };
    let config = TlsConfig { cert, key, client_ca: args.tls_client_ca.clone(), client_auth };
    Ok(Some(Tls::new(config)?))
}

/// On each SIGHUP, reads the TLS files again; a bad file is logged and the
/// previous ones stay in use. Connections already open are not touched.
fn reload_on_sighup(tls: Option<Tls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: TLS files will not be reloaded");
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match &tls {
                    // `reload` logs its outcome.
                    Some(tls) => {
                        let _ = tls.reload();
                    }
                    None => tracing::info!("received SIGHUP: no TLS to reload"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(tls);
}

/// The effective settings, as a config file would give them.
fn print_config(a: &ServeArgs) -> anyhow::Result<()> {
    let mut out = stdout();
    let metrics = a.metrics_listen.0.map_or_else(|| "off".to_owned(), |addr| addr.to_string());
    writeln!(out, "data_dir = {:?}", a.data_dir.display().to_string())?;
    writeln!(out, "listen = \"{}\"", a.listen)?;
    writeln!(out, "metrics_listen = \"{metrics}\"")?;
    writeln!(out, "console = \"{}\"", if a.console { "on" } else { "off" })?;
    writeln!(out, "max_partitions = {}", a.max_partitions)?;
    writeln!(out, "max_record_bytes = {}", a.max_record_bytes)?;
    writeln!(out, "cache_mb = {}", a.cache_mb)?;
    writeln!(out, "durability = \"{}\"", a.durability)?;
    writeln!(out, "min_free_mb = {}", a.min_free_mb)?;
    writeln!(out, "flush_max_delay_ms = {}", a.flush_max_delay_ms)?;
    writeln!(out, "max_connections = {}", a.max_connections)?;
    writeln!(out, "max_requests_per_connection = {}", a.max_requests_per_connection)?;
    writeln!(out, "max_connections_per_ip = {}", a.max_connections_per_ip)?;
    writeln!(out, "handshake_timeout_ms = {}", a.handshake_timeout_ms)?;
    writeln!(out, "connections_max_idle_ms = {}", a.connections_max_idle_ms)?;
    writeln!(out, "slow_request_ms = {}", a.slow_request_ms)?;
    writeln!(out, "retention_check_ms = {}", a.retention_check_ms)?;
    writeln!(out, "group_heartbeat_ms = {}", a.group_heartbeat_ms)?;
    writeln!(out, "group_session_timeout_ms = {}", a.group_session_timeout_ms)?;
    writeln!(out, "group_min_session_timeout_ms = {}", a.group_min_session_timeout_ms)?;
    writeln!(out, "group_max_session_timeout_ms = {}", a.group_max_session_timeout_ms)?;
    writeln!(out, "group_initial_rebalance_delay_ms = {}", a.group_initial_rebalance_delay_ms)?;
    if let Some(addr) = a.kafka_listen {
        writeln!(out, "kafka_listen = \"{addr}\"")?;
    }
    if let Some((host, port)) = &a.kafka_advertised {
        writeln!(out, "kafka_advertised = \"{host}:{port}\"")?;
    }
    writeln!(out, "kafka_auto_create_topics = {}", a.kafka_auto_create_topics)?;
    writeln!(out, "kafka_default_partitions = {}", a.kafka_default_partitions)?;
    writeln!(out, "auth = \"{}\"", a.auth)?;
    let paths = [("tls_cert", &a.tls_cert), ("tls_key", &a.tls_key), ("tls_client_ca", &a.tls_client_ca)];
    for (key, path) in paths {
        if let Some(path) = path {
            writeln!(out, "{key} = {:?}", path.display().to_string())?;
        }
    }
    if let Some(mode) = &a.tls_client_auth {
        writeln!(out, "tls_client_auth = \"{mode}\"")?;
    }
    writeln!(out, "tls_principal_from = \"{}\"", a.tls_principal_from)?;
    writeln!(out, "allow_insecure = {}", a.allow_insecure)?;
    if !a.superusers.is_empty() {
        writeln!(out, "superusers = \"{}\"", a.superusers.join(","))?;
    }
    Ok(())
}
