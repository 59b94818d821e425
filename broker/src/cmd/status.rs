//! `brooklet status`: the broker at a glance.

use super::{BrokerArgs, stdout};

pub async fn run(broker: BrokerArgs) -> anyhow::Result<()> {
    let admin = broker.admin()?;
    let s = admin.status().await?;
    let mut out = stdout();
    let secs = s.uptime.as_secs();
    writeln!(
        out,
        "brooklet {} at {}, up {}h{:02}m{:02}s",
        s.version,
        broker.url,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )?;
    writeln!(
        out,
        "data dir {}: {:.1} MB used, {:.1} MB free",
        s.data_dir,
        s.disk_bytes as f64 / 1e6,
        s.disk_free_bytes as f64 / 1e6
    )?;
    let listeners: Vec<String> = s.listeners.iter().map(|l| format!("{} {}", l.name, l.address)).collect();
    writeln!(out, "listeners: {}", listeners.join(", "))?;
    writeln!(out)?;
    writeln!(out, "{:<40} {:>10} {:>14} {:>14}", "TOPIC", "PARTITIONS", "RECORDS", "STORED-BYTES")?;
    for t in &s.topics {
        writeln!(out, "{:<40} {:>10} {:>14} {:>14}", t.name, t.partitions, t.records, t.stored_bytes)?;
    }
    writeln!(out)?;
    writeln!(out, "{:<40} {:<12} {:>7} {:>14}", "GROUP", "STATE", "MEMBERS", "TOTAL-LAG")?;
    for g in &s.groups {
        writeln!(out, "{:<40} {:<12} {:>7} {:>14}", g.group, g.state.to_string(), g.members, g.total_lag)?;
    }
    Ok(())
}
