//! `brooklet user add|list|delete|set-password`: through the running
//! broker's admin API, or with `--data-dir` on a stopped broker's data
//! directory (how the first user can be made). A new password comes from
//! `BROOKLET_NEW_PASSWORD` or the first line of standard input, never from
//! the command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::Context;

use super::{BrokerArgs, UserCommand, stdout};

/// The new password: `BROOKLET_NEW_PASSWORD`, else a line of standard input
/// (prompted for on a terminal).
fn new_password(name: &str) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("BROOKLET_NEW_PASSWORD") {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for {name}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password: set BROOKLET_NEW_PASSWORD or write it as the first line of standard input"
    );
    Ok(password)
}

pub async fn run(command: UserCommand, broker: BrokerArgs) -> anyhow::Result<()> {
    let data_dir = match &command {
        UserCommand::Add { data_dir, .. }
        | UserCommand::List { data_dir }
        | UserCommand::Delete { data_dir, .. }
        | UserCommand::SetPassword { data_dir, .. } => data_dir.clone(),
    };
    match data_dir {
        Some(dir) => offline(command, &dir).await,
        None => online(command, &broker).await,
    }
}

async fn online(command: UserCommand, broker: &BrokerArgs) -> anyhow::Result<()> {
    let admin = broker.admin()?;
    let mut out = stdout();
    match command {
        UserCommand::Add { name, .. } => {
            admin.create_user(&name, &new_password(&name)?).await?;
            writeln!(out, "created user {name}")?;
        }
        UserCommand::SetPassword { name, .. } => {
            admin.set_user_password(&name, &new_password(&name)?).await?;
            writeln!(out, "changed the password of user {name}")?;
        }
        UserCommand::Delete { name, .. } => {
            admin.delete_user(&name).await?;
            writeln!(out, "deleted user {name}")?;
        }
        UserCommand::List { .. } => {
            writeln!(out, "{:<40} MECHANISMS", "USER")?;
            for (name, mechanisms) in admin.list_users().await? {
                writeln!(out, "{name:<40} {}", mechanisms.join(","))?;
            }
        }
    }
    Ok(())
}

/// The same commands on a stopped broker's data directory.
async fn offline(command: UserCommand, dir: &Path) -> anyhow::Result<()> {
    // The first user is made before the broker's first start: `add`
    // creates the directory, as `serve` does, once it has the password.
    // The other commands need users, so a missing directory is a mistake.
    let password = match &command {
        UserCommand::Add { name, .. } | UserCommand::SetPassword { name, .. } => Some(new_password(name)?),
        UserCommand::List { .. } | UserCommand::Delete { .. } => None,
    };
    let create = matches!(command, UserCommand::Add { .. });
    super::offline_core(dir, create, async |core| {
        let mut out = stdout();
        match command {
            UserCommand::Add { name, .. } => {
                core.users().add(&name, password.as_deref().unwrap_or_default()).await?;
                writeln!(out, "created user {name} in {}", dir.display())?;
            }
            UserCommand::SetPassword { name, .. } => {
                core.users().set_password(&name, password.as_deref().unwrap_or_default()).await?;
                writeln!(out, "changed the password of user {name} in {}", dir.display())?;
            }
            UserCommand::Delete { name, .. } => {
                core.users().delete(&name).await?;
                writeln!(out, "deleted user {name} in {}", dir.display())?;
            }
            UserCommand::List { .. } => {
                writeln!(out, "{:<40} MECHANISMS", "USER")?;
                for u in core.users().list()? {
                    writeln!(out, "{:<40} {}", u.name, u.mechanisms.join(","))?;
                }
            }
        }
        anyhow::Ok(())
    })
    .await
}
