//! The `brooklet` binary: parse the command line, set up logging, run one
//! command. The broker itself is the library; the client commands use
//! `brooklet-client`. Errors print one line to stderr and exit non-zero.

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
    let parsed = command.try_get_matches_from(args).and_then(|m| cmd::Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, like every other error; `--help` has the rest.
            let rendered = e.render().to_string();
            let first: Vec<&str> = rendered.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
            eprintln!("{}", first.join(" "));
            return ExitCode::from(2);
        }
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
        Err(e) => {
            eprintln!("error: {e:#}");
            // A setting the broker refuses is a usage error, like a bad flag.
            let invalid = matches!(e.downcast_ref(), Some(brooklet_broker::Error::InvalidArgument { .. }))
                || matches!(e.downcast_ref(), Some(brooklet_broker::ServeError::Config(_)));
            if invalid { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
