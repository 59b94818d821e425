//! `brooklet group list|describe|reset-offsets|delete`.

use brooklet_client::ResetTo;

use super::{BrokerArgs, GroupCommand, count, stdout};

pub async fn run(command: GroupCommand, broker: BrokerArgs) -> anyhow::Result<()> {
    let mut out = stdout();
    match command {
        GroupCommand::List => {
            let groups = broker.admin()?.list_groups().await?;
            writeln!(out, "{:<40} {:<20} {:>7}", "GROUP", "STATE", "MEMBERS")?;
            for g in groups {
                writeln!(out, "{:<40} {:<20} {:>7}", g.group, g.state.to_string(), g.members)?;
            }
        }
        GroupCommand::Describe { group } => {
            let d = broker.admin()?.describe_group(&group).await?;
            let total: u64 = d.partitions.iter().map(|p| p.lag).sum();
            writeln!(
                out,
                "group {} is {} (epoch {}), {}, total lag {total}",
                d.group,
                d.state,
                d.epoch,
                count(d.members.len() as u64, "member")
            )?;
            if d.kind == Some("kafka-classic") {
                let protocol = if d.protocol.is_empty() { "-" } else { d.protocol.as_str() };
                writeln!(
                    out,
                    "Kafka classic group: protocol type {}, protocol {protocol}; the epoch is its generation",
                    d.protocol_type
                )?;
            }
            if !d.members.is_empty() {
                writeln!(out)?;
                // Columns as wide as their longest value: Kafka clients'
                // member ids are long.
                let width = |header: &str, values: &mut dyn Iterator<Item = usize>| {
                    values.chain([header.len()]).max().unwrap_or(0)
                };
                let id = width("MEMBER", &mut d.members.iter().map(|m| m.member_id.len()));
                let client = width("CLIENT-ID", &mut d.members.iter().map(|m| m.client_id.len()));
                let host = width("HOST", &mut d.members.iter().map(|m| m.host.len()));
                // Kafka's static members: their group.instance.id, if any has one.
                let instance = match d.members.iter().any(|m| m.group_instance_id.is_some()) {
                    true => {
                        width(
                            "INSTANCE",
                            &mut d
                                .members
                                .iter()
                                .map(|m| m.group_instance_id.as_ref().map_or(1, String::len)),
                        ) + 1
                    }
                    false => 0,
                };
                let header = if instance > 0 { "INSTANCE" } else { "" };
                writeln!(
                    out,
                    "{:<id$} {:<client$} {:<host$} {header:<instance$}ASSIGNMENT",
                    "MEMBER", "CLIENT-ID", "HOST"
                )?;
                for m in &d.members {
                    let assignment: Vec<String> =
                        m.assignment.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                    let static_id = match (instance, &m.group_instance_id) {
                        (0, _) => "",
                        (_, Some(i)) => i.as_str(),
                        (_, None) => "-",
                    };
                    writeln!(
                        out,
                        "{:<id$} {:<client$} {:<host$} {static_id:<instance$}{}",
                        m.member_id,
                        m.client_id,
                        m.host,
                        assignment.join(",")
                    )?;
                }
            }
            writeln!(out)?;
            writeln!(
                out,
                "{:<30} {:>9} {:>12} {:>15} {:>10}  OWNER",
                "TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG"
            )?;
            for p in &d.partitions {
                let committed = p.committed_offset.map_or_else(|| "-".to_owned(), |o| o.to_string());
                writeln!(
                    out,
                    "{:<30} {:>9} {:>12} {:>15} {:>10}  {}",
                    p.topic,
                    p.partition,
                    committed,
                    p.high_watermark,
                    p.lag,
                    p.member_id.as_deref().unwrap_or("-")
                )?;
            }
        }
        GroupCommand::ResetOffsets { group, topic, to } => {
            let offsets = broker.admin()?.reset_offsets(&group, &topic, to).await?;
            writeln!(out, "{:<30} {:>9} {:>12}", "TOPIC", "PARTITION", "NEW-OFFSET")?;
            for o in offsets {
                writeln!(out, "{:<30} {:>9} {:>12}", o.topic, o.partition, o.offset)?;
            }
        }
        GroupCommand::Delete { group } => {
            broker.admin()?.delete_group(&group).await?;
            writeln!(out, "deleted group {group}")?;
        }
    }
    Ok(())
}

/// `earliest`, `latest`, an offset, or an RFC 3339 date-time such as
/// `2026-11-26T10:00:00Z`.
pub fn parse_reset_to(s: &str) -> Result<ResetTo, String> {
    match s {
        "earliest" => Ok(ResetTo::Earliest),
        "latest" => Ok(ResetTo::Latest),
        _ if s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map(ResetTo::Offset).map_err(|e| format!("`{s}` is not an offset: {e}"))
        }
        _ => {
            let time = humantime::parse_rfc3339_weak(s).map_err(|e| {
                format!("`{s}` is not earliest, latest, an offset or an RFC 3339 date-time (2026-11-26T10:00:00Z): {e}")
            })?;
            let ms = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| format!("`{s}` is before 1970"))?
                .as_millis();
            i64::try_from(ms).map(ResetTo::Timestamp).map_err(|_| format!("`{s}` is too far in the future"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets_parse() {
        assert!(matches!(parse_reset_to("earliest"), Ok(ResetTo::Earliest)));
        assert!(matches!(parse_reset_to("latest"), Ok(ResetTo::Latest)));
        assert!(matches!(parse_reset_to("42"), Ok(ResetTo::Offset(42))));
        assert!(matches!(parse_reset_to("1970-01-01T00:00:01Z"), Ok(ResetTo::Timestamp(1000))));
        assert!(parse_reset_to("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
