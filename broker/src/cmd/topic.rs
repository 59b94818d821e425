//! `brooklet topic create|list|describe|delete`.

use brooklet_client::NewTopic;

use super::{BrokerArgs, TopicCommand, count, stdout};

pub async fn run(command: TopicCommand, broker: BrokerArgs) -> anyhow::Result<()> {
    let mut out = stdout();
    match command {
        TopicCommand::Create { name, partitions, config } => {
            let topic = config.into_iter().fold(NewTopic::new(partitions), |t, (k, v)| t.config(k, v));
            let info = broker.admin()?.create_topic(&name, topic).await?;
            writeln!(
                out,
                "created topic {} with {} (id {})",
                info.name,
                count(info.partitions.into(), "partition"),
                info.topic_id
            )?;
        }
        TopicCommand::List => {
            let topics = broker.admin()?.list_topics().await?;
            writeln!(out, "{:<40} {:>10}  ID", "TOPIC", "PARTITIONS")?;
            for t in topics {
                writeln!(out, "{:<40} {:>10}  {}", t.name, t.partitions, t.topic_id)?;
            }
        }
        TopicCommand::Describe { name } => {
            let d = broker.admin()?.describe_topic(&name).await?;
            writeln!(
                out,
                "topic {} (id {}), {}",
                d.info.name,
                d.info.topic_id,
                count(d.info.partitions.into(), "partition")
            )?;
            for (k, v) in &d.info.config {
                writeln!(out, "config {k}={v}")?;
            }
            writeln!(
                out,
                "{:>9} {:>16} {:>16} {:>12}",
                "PARTITION", "LOG-START", "HIGH-WATERMARK", "RECORDS"
            )?;
            for p in &d.partitions {
                writeln!(
                    out,
                    "{:>9} {:>16} {:>16} {:>12}",
                    p.partition,
                    p.log_start_offset,
                    p.high_watermark,
                    p.high_watermark - p.log_start_offset
                )?;
            }
        }
        TopicCommand::Alter { name, config, delete_config } => {
            if config.is_empty() && delete_config.is_empty() {
                anyhow::bail!("nothing to change: give --config KEY=VALUE or --delete-config KEY");
            }
            let set: Vec<(&str, &str)> = config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let remove: Vec<&str> = delete_config.iter().map(String::as_str).collect();
            let info = broker.admin()?.alter_topic_config(&name, &set, &remove).await?;
            let entries: Vec<String> = info.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                out,
                "altered topic {name}: {}",
                if entries.is_empty() { "defaults".to_owned() } else { entries.join(" ") }
            )?;
        }
        TopicCommand::Delete { name } => {
            broker.admin()?.delete_topic(&name).await?;
            writeln!(out, "deleted topic {name}")?;
        }
    }
    Ok(())
}
