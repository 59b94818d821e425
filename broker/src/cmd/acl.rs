//! `brooklet acl add|list|remove`: access-control entries, through the
//! running broker's admin API, or with `--data-dir` on a stopped broker's
//! data directory (how the first entries can be made). One entry per
//! operation; each printed on one line in the broker's form, e.g. `allow
//! User:alice write topic prefixed orders.`.

use std::path::Path;

use anyhow::Context;
use brooklet_client::{AclEntry, AclFilter, AclPattern, AclPermission, AclResourceType, Code};
use brooklet_core::{Acl, Operation, PatternType, Permission, ResourceType};

use super::{AclArgs, AclCommand, AclListArgs, BrokerArgs, stdout};

/// The resource type and name that `--topic`, `--group` or `--cluster` chose.
fn resource(topic: Option<&str>, group: Option<&str>, cluster: bool) -> Option<(AclResourceType, String)> {
    match (topic, group, cluster) {
        (Some(t), _, _) => Some((AclResourceType::Topic, t.to_owned())),
        (_, Some(g), _) => Some((AclResourceType::Group, g.to_owned())),
        (_, _, true) => Some((AclResourceType::Cluster, String::new())),
        _ => None,
    }
}

/// The entries `args` names, one per operation.
fn entries(args: &AclArgs) -> anyhow::Result<Vec<AclEntry>> {
    let (resource_type, name) = resource(args.topic.as_deref(), args.group.as_deref(), args.cluster)
        .context("name one of --topic, --group or --cluster")?;
    anyhow::ensure!(
        !(args.prefixed && resource_type == AclResourceType::Cluster),
        "--prefixed goes with --topic or --group, not --cluster"
    );
    let mut operations = args.operations.clone();
    operations.sort();
    operations.dedup();
    Ok(operations
        .into_iter()
        .map(|operation| AclEntry {
            principal: args.principal.clone(),
            resource_type,
            pattern: if args.prefixed { AclPattern::Prefixed } else { AclPattern::Literal },
            name: name.clone(),
            operation,
            permission: if args.deny { AclPermission::Deny } else { AclPermission::Allow },
        })
        .collect())
}

fn filter(args: &AclListArgs) -> AclFilter {
    let resource = resource(args.topic.as_deref(), args.group.as_deref(), args.cluster);
    AclFilter {
        principal: args.principal.clone(),
        resource_type: resource.as_ref().map(|(t, _)| *t),
        name: resource.map(|(_, n)| n).filter(|n| !n.is_empty()),
    }
}

pub async fn run(command: AclCommand, broker: BrokerArgs) -> anyhow::Result<()> {
    let data_dir = match &command {
        AclCommand::Add(a) | AclCommand::Remove(a) => a.data_dir.clone(),
        AclCommand::List(a) => a.data_dir.clone(),
    };
    match data_dir {
        Some(dir) => offline(command, &dir).await,
        None => online(command, &broker).await,
    }
}

async fn online(command: AclCommand, broker: &BrokerArgs) -> anyhow::Result<()> {
    let admin = broker.admin()?;
    let mut out = stdout();
    match command {
        AclCommand::Add(args) => {
            for entry in entries(&args)? {
                let added = admin.create_acl(&entry).await?;
                writeln!(out, "{} {entry}", if added { "added" } else { "exists" })?;
            }
        }
        AclCommand::Remove(args) => {
            let mut removed = 0;
            for entry in entries(&args)? {
                match admin.delete_acl(&entry).await {
                    Ok(()) => {
                        removed += 1;
                        writeln!(out, "removed {entry}")?;
                    }
                    Err(brooklet_client::Error::Broker { code: Code::NotFound, .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            anyhow::ensure!(removed > 0, "no ACL matched: nothing removed");
            writeln!(out, "{}", removed_total(removed))?;
        }
        AclCommand::List(args) => {
            for entry in admin.list_acls(&filter(&args)).await? {
                writeln!(out, "{entry}")?;
            }
        }
    }
    Ok(())
}

/// The last line of `remove`: how many entries it removed.
fn removed_total(n: usize) -> String {
    if n == 1 { "1 entry removed".to_owned() } else { format!("{n} entries removed") }
}

/// The core's entry for `entry`, checked as the broker checks it.
fn core_acl(entry: &AclEntry) -> anyhow::Result<Acl> {
    let unknown = || anyhow::anyhow!("unknown field in {entry}");
    Ok(Acl::new(
        &entry.principal,
        ResourceType::from_name(entry.resource_type.name()).ok_or_else(unknown)?,
        PatternType::from_name(entry.pattern.name()).ok_or_else(unknown)?,
        &entry.name,
        Operation::from_name(entry.operation.name()).ok_or_else(unknown)?,
        Permission::from_name(entry.permission.name()).ok_or_else(unknown)?,
    )?)
}

/// The same commands on a stopped broker's data directory.
async fn offline(command: AclCommand, dir: &Path) -> anyhow::Result<()> {
    // The first entries are made before the broker's first start: `add`
    // creates the directory, as `serve` does, once its entries are valid.
    let create = match &command {
        AclCommand::Add(args) => {
            entries(args)?.iter().try_for_each(|entry| core_acl(entry).map(drop))?;
            true
        }
        AclCommand::Remove(_) | AclCommand::List(_) => false,
    };
    super::offline_core(dir, create, async |core| {
        let mut out = stdout();
        match command {
            AclCommand::Add(args) => {
                for entry in entries(&args)? {
                    let acl = core_acl(&entry)?;
                    let added = core.acls().add(&acl).await?;
                    writeln!(out, "{} {acl}", if added { "added" } else { "exists" })?;
                }
            }
            AclCommand::Remove(args) => {
                let mut removed = 0;
                for entry in entries(&args)? {
                    let acl = core_acl(&entry)?;
                    if core.acls().remove(&acl).await? {
                        removed += 1;
                        writeln!(out, "removed {acl}")?;
                    }
                }
                anyhow::ensure!(removed > 0, "no ACL matched: nothing removed");
                writeln!(out, "{}", removed_total(removed))?;
            }
            AclCommand::List(args) => {
                let f = filter(&args);
                let principal = f.principal.as_deref().map(|p| p.strip_prefix("User:").unwrap_or(p));
                for acl in core.acls().list().iter().filter(|a| {
                    principal.is_none_or(|p| a.principal() == p)
                        && f.resource_type.is_none_or(|t| a.resource_type().name() == t.name())
                        && f.name.as_deref().is_none_or(|n| a.name() == n)
                }) {
                    writeln!(out, "{acl}")?;
                }
            }
        }
        anyhow::Ok(())
    })
    .await
}
