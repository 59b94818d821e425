//! Command-line parsing and dispatch for the `brooklet` binary.

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Brooklet: a lightweight, self-hosted message broker.
#[derive(Debug, Parser)]
#[command(name = "brooklet", version, about)]
pub struct Cli {
    /// Log filter, e.g. `info` or `brooklet_broker=debug` (RUST_LOG syntax).
    #[arg(long, global = true, env = "BROOKLET_LOG", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker.
    Serve(ServeArgs),
}

/// `brooklet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory holding the broker's data.
    #[arg(long, env = "BROOKLET_DATA_DIR", default_value = "./brooklet-data")]
    pub data_dir: PathBuf,
    /// Address to listen on for gRPC.
    #[arg(long, env = "BROOKLET_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Most partitions a topic may have.
    #[arg(long, env = "BROOKLET_MAX_PARTITIONS", default_value_t = 1024)]
    pub max_partitions: u32,
    /// Largest record accepted (key + value + headers), in bytes.
    #[arg(long, env = "BROOKLET_MAX_RECORD_BYTES", default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// Storage cache size in MiB.
    #[arg(long, env = "BROOKLET_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,
}

/// Logs go to stderr so that `consume` can print records on stdout.
pub fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
    }
}
