//! `brooklet status`: the broker at a glance.

use super::{BrokerArgs, stdout};

pub async fn run(broker: BrokerArgs) -> anyhow::Result<()> {
    let admin = broker.admin()?;
    let s = admin.status().await?;
    let mut out = stdout();
    writeln!(out, "brooklet {} at {}, up {}", s.version, broker.url, uptime(s.uptime.as_secs()))?;
    writeln!(
        out,
        "data dir {}: {} used, {} free",
        s.data_dir,
        binary_bytes(s.disk_bytes),
        binary_bytes(s.disk_free_bytes)
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

/// `3725` → `1h 02m 05s`, as the console shows it.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h}h {m:02}m"),
    }
}

/// Bytes in binary units (`800.0 MiB`), as the console shows them.
fn binary_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_and_sizes_read_as_in_the_console() {
        assert_eq!(uptime(7), "7s");
        assert_eq!(uptime(60), "1m 00s");
        assert_eq!(uptime(3725), "1h 02m 05s");
        assert_eq!(uptime(2 * 86_400 + 3600 + 60), "2d 1h 01m");
        assert_eq!(binary_bytes(512), "512 B");
        assert_eq!(binary_bytes(838_860_800), "800.0 MiB");
        assert_eq!(binary_bytes(18_790_000_000), "17.5 GiB");
    }
}
