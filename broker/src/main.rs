//! The `brooklet` binary: parse the command line, set up logging, run one
//! command. The broker itself is the library; the client commands use
//! `brooklet-client`. Errors print one line to stderr and exit non-zero; a
//! standard output closed by its reader (`brooklet … | head`) ends the
//! command quietly with exit code 0, as in ripgrep.

mod cmd;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = cmd::Cli::command();
    if let Some(path) = cmd::config_file::path_in(&args) {
        command = match cmd::config_file::apply(command, &path) {
            Ok(command) => command,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    }
    let matches = match command.try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) => return usage_error(e),
    };
    if let Err(refused) = cmd::refuse_broker_flags(&matches) {
        eprintln!("error: {refused}");
        return ExitCode::from(2);
    }
    let cli = match cmd::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    cmd::init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `brooklet … | head`: the reader has what it wanted.
        Err(e) if e.chain().any(|cause| cause.is::<cmd::StdoutClosed>()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            // A setting the broker refuses is a usage error, like a bad flag.
            let invalid = matches!(e.downcast_ref(), Some(brooklet_broker::Error::InvalidArgument { .. }))
                || matches!(
                    e.downcast_ref(),
                    Some(brooklet_broker::ServeError::Config(_) | brooklet_broker::ServeError::Tls(_))
                );
            if invalid { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// Prints a command-line error as one line, like every other error (`--help`
/// has the rest), or the help or version clap was asked for.
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        e.exit(); // --help, --version
    }
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
    eprintln!("{}", first.join(" "));
    ExitCode::from(2)
}

/// The error's chain on one line, as `{e:#}` prints it, except for a few
/// errors told in a CLI user's words:
///
/// - a broker that cannot be reached, in a few words: the client's
///   `Unavailable` error carries tonic's whole transport chain, some 400
///   characters of debug output. That chain goes to the debug log
///   (`--log-level debug`);
/// - a TLS failure, with the flag that fixes it (the client's own message
///   names its Rust API);
/// - a missing topic, with the command that creates it (the client's own
///   message names its Rust API);
/// - a data directory another broker holds, alone: the context above it
///   would only name the directory again.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        if let Some(brooklet_client::Error::Unavailable { endpoint, source }) = cause.downcast_ref() {
            tracing::debug!(error = format!("{e:#}"), "cannot reach the broker");
            let why = io_cause(source.as_ref()).map(|why| format!(" ({why})")).unwrap_or_default();
            parts.push(format!(
                "cannot reach the broker at {endpoint}{why}: is `brooklet serve` running there?"
            ));
            break;
        }
        if let Some(brooklet_client::Error::Tls { endpoint, failure, .. }) = cause.downcast_ref() {
            tracing::debug!(error = format!("{e:#}"), "TLS with the broker failed");
            parts.push(tls_failure(endpoint, failure));
            break;
        }
        if let Some(brooklet_client::Error::TopicNotFound { topic }) = cause.downcast_ref() {
            parts.push(format!(
                "topic {topic:?} does not exist: create it first (brooklet topic create {topic})"
            ));
            break;
        }
        if let Some(locked @ brooklet_broker::Error::Storage(brooklet_core::StorageError::Locked { .. })) =
            cause.downcast_ref()
        {
            return locked.to_string();
        }
        // A cause its parent's message already quotes (`cannot read FILE:
        // {source}` with the source also in the chain) is printed once.
        let text = cause.to_string();
        if !parts.last().is_some_and(|parent: &String| parent.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A TLS failure in the CLI's words: what is wrong, and the flag that fixes
/// it.
fn tls_failure(endpoint: &str, failure: &brooklet_client::TlsFailure) -> String {
    use brooklet_client::TlsFailure;
    match failure {
        TlsFailure::UntrustedBroker { reason } if reason == "UnknownIssuer" => format!(
            "the certificate of the broker at {endpoint} is not trusted (UnknownIssuer): pass its CA with \
             --tls-ca FILE"
        ),
        TlsFailure::UntrustedBroker { reason } => format!(
            "the certificate of the broker at {endpoint} is not trusted ({reason}): renew it, or connect \
             to a host name it is issued for"
        ),
        TlsFailure::ClientCertificateRequired => format!(
            "the broker at {endpoint} requires a client certificate: pass --tls-client-cert and \
             --tls-client-key"
        ),
        TlsFailure::ClientCertificateRefused { alert } => format!(
            "the broker at {endpoint} refused the client certificate ({alert}): pass one signed by a CA in \
             the broker's --tls-client-ca"
        ),
        TlsFailure::NotTls => {
            format!("the broker at {endpoint} did not answer TLS: if it serves plaintext, use http://")
        }
        TlsFailure::NotPlaintext => format!(
            "the broker at {endpoint} did not answer gRPC over plaintext: if it serves TLS, use https:// \
             and --tls-ca"
        ),
        other => other.to_string(),
    }
}

/// The first I/O error in `error`'s chain, e.g. `connection refused`, without
/// the OS error number.
fn io_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            let mut chars = text.chars();
            return chars.next().map(|first| first.to_lowercase().chain(chars).collect());
        }
        next = e.source();
    }
    None
}
