//! What ends a command that runs until told to stop (`serve`, `consume
//! --follow`) other than its own work: SIGINT (ctrl-c) or SIGTERM (`kill`,
//! `timeout`, a service manager), and, for a command printing records, a
//! standard output whose reader has left (`| head -1`).

use std::future::Future;

/// Resolves on the first SIGINT or SIGTERM, with the signal's name.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: from then on either signal is kept for the future rather
/// than ending the process, so a command calls this before it does
/// anything it must undo (joining a group, say).
pub fn signal() -> impl Future<Output = &'static str> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            tokio::select! {
                () = received(interrupt, "SIGINT") => "SIGINT",
                () = received(terminate, "SIGTERM") => "SIGTERM",
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
        "ctrl-c"
    }
}

/// Resolves when `handler` receives its signal; never if it could not be
/// installed (which is logged).
#[cfg(unix)]
async fn received(handler: std::io::Result<tokio::signal::unix::Signal>, name: &str) {
    match handler {
        Ok(mut handler) => {
            handler.recv().await;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for {name}");
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves once standard output is a pipe whose reader has left (`brooklet
/// consume t --follow | head -1` after `head` exited), noticed while
/// nothing is being written: the next write would fail with a broken pipe.
///
/// It watches a duplicate of the pipe's descriptor for the error the
/// system reports on a pipe without readers (Linux's `EPOLLERR`), and never
/// writes to it. Where standard output is not a pipe (a terminal, a file,
/// `/dev/null`) or cannot be watched (a system other than Unix) it never
/// resolves, and a closed output is noticed at the next write, as before.
pub async fn stdout_reader_gone() {
    #[cfg(unix)]
    if let Some(pipe) = stdout_pipe()
        && pipe.ready(tokio::io::Interest::ERROR).await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

/// A watch on standard output, if it is a pipe. The pipe stays blocking:
/// `from_file_unchecked` leaves the descriptor's flags as they are, unlike
/// the checked constructors, which would make standard output's writes
/// non-blocking too (the duplicate shares them).
#[cfg(unix)]
fn stdout_pipe() -> Option<tokio::net::unix::pipe::Sender> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let duplicate = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().ok()?);
    if !duplicate.metadata().ok()?.file_type().is_fifo() {
        return None;
    }
    tokio::net::unix::pipe::Sender::from_file_unchecked(duplicate).ok()
}
