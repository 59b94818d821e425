//! Sends records and returns from `main` without `close()`: the mistake of
//! the report "dropping a `Producer` loses what it buffered, silently". Do
//! not copy it; `order_service.rs` shows the way out.
//!
//! ```text
//! cargo run -p brooklet-client --example drop_without_close -- ENDPOINT TOPIC COUNT [OPTIONS]
//!
//!   --linger-ms MS          how long a batch waits for more records (default 5)
//!   --flush-on-drop-ms MS   set ProducerBuilder::flush_on_drop to MS milliseconds
//!   --current-thread        run on a current-thread runtime instead of a multi-thread one
//!   --log                   install a tracing subscriber that writes to stderr
//! ```
//!
//! The topic must exist. When `main` returns, the producer is dropped and
//! then the runtime shuts down, before the producer could send what it still
//! held. Those records are not delivered, and the producer says so: an error
//! event with their count, written to stderr when no tracing subscriber is
//! installed. With `--flush-on-drop-ms`, the drop waits for them instead.

use std::process::ExitCode;
use std::time::Duration;

use brooklet_client::{Producer, ProducerRecord};

struct Args {
    endpoint: String,
    topic: String,
    count: u64,
    linger: Duration,
    flush_on_drop: Option<Duration>,
    current_thread: bool,
    log: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut linger, mut flush_on_drop) = (Duration::from_millis(5), None);
    let (mut current_thread, mut log) = (false, false);
    let millis = |value: Option<String>, flag: &str| -> Result<Duration, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
        value.parse().map(Duration::from_millis).map_err(|e| format!("{flag} {value}: {e}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--linger-ms" => linger = millis(args.next(), "--linger-ms")?,
            "--flush-on-drop-ms" => flush_on_drop = Some(millis(args.next(), "--flush-on-drop-ms")?),
            "--current-thread" => current_thread = true,
            "--log" => log = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => positional.push(arg),
        }
    }
    let [endpoint, topic, count] = <[String; 3]>::try_from(positional)
        .map_err(|_| "usage: drop_without_close ENDPOINT TOPIC COUNT [OPTIONS]".to_owned())?;
    let count = count.parse().map_err(|e| format!("COUNT {count}: {e}"))?;
    Ok(Args { endpoint, topic, count, linger, flush_on_drop, current_thread, log })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if args.log {
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    }
    // What `#[tokio::main]` (or `#[tokio::main(flavor = "current_thread")]`)
    // expands to: the runtime is dropped, and shuts down, as `main` returns.
    let mut runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = runtime.enable_all().build().expect("a Tokio runtime");
    match runtime.block_on(send_and_return(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn send_and_return(args: &Args) -> brooklet_client::Result<()> {
    let mut builder = Producer::builder(&args.endpoint).linger(args.linger);
    if let Some(timeout) = args.flush_on_drop {
        builder = builder.flush_on_drop(timeout);
    }
    let producer = builder.build()?;
    for i in 0..args.count {
        // Each `send` returns once the record joined a batch; its delivery
        // is dropped unawaited, as in the report.
        let _delivery = producer.send(&args.topic, ProducerRecord::new(format!("record {i}"))).await?;
    }
    println!("{} records sent; returning without close()", args.count);
    // The mistake: no `producer.close().await?` here.
    Ok(())
}
