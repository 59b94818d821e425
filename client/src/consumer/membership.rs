//! A subscribed consumer's membership in its group: one background task per
//! consumer that heartbeats, applies the broker's assignment to the shared
//! [`Positions`], commits (automatically, on request, and before releasing a
//! partition), and leaves on close. It is the only writer of the set of
//! partitions a subscribed consumer owns; `poll` only moves positions.
//!
//! The task ends when the consumer closes, when the subscription fails for
//! good (the broker refuses it, or a topic is missing with
//! `MissingTopics::Fail`), or when the consumer is dropped: dropping the
//! [`Handle`] closes the command channel, and the task then leaves the group
//! (without committing) before it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use brooklet_proto::v1;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::positions::{Lost, Positions, ToCommit, TopicPartition};
use super::{MissingTopics, RebalanceEvent};
use crate::admin::{CommittedOffset, single_topic};
use crate::connection::{Backoff, CallOptions, Connection};
use crate::error::{Error, Op, Result};
use crate::group::{topic_partitions_in, topic_partitions_out};

/// The session timeout assumed when the consumer asks for none: the
/// broker's default. Used only to decide when, with the broker unreachable,
/// the session has surely expired.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest wait between heartbeats, whatever the broker says.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);
/// Requests to the task waiting at once; `commit` callers beyond it wait.
const COMMAND_QUEUE: usize = 8;
/// How often the task checks again, and warns, while subscribed topics are
/// missing.
const MISSING_TOPICS_CHECK: Duration = Duration::from_secs(30);

/// What the consumer asks of its task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Commit every delivered position, and report lost partitions.
    Commit(oneshot::Sender<Result<()>>),
    /// Commit, leave the group, and end.
    Close(oneshot::Sender<Result<()>>),
}

/// The membership as the consumer sees it, published after each answered
/// heartbeat.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// The member id, once a heartbeat was answered; `None` again while
    /// rejoining after the session was lost.
    pub(crate) member_id: Option<String>,
    /// What the last answer said the member owns, ordered.
    pub(crate) assignment: Vec<TopicPartition>,
    /// Why the task stopped, if the broker refused the membership for good.
    pub(crate) failed: Option<Error>,
}

/// What the task needs to know, fixed at `subscribe`.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) group: String,
    pub(crate) client_id: String,
    pub(crate) session_timeout: Option<Duration>,
    pub(crate) auto_commit: Option<Duration>,
    pub(crate) request_timeout: Duration,
    pub(crate) missing_topics: MissingTopics,
}

/// The consumer's side of its task. Dropping it closes the command
/// channel: the task, which runs on the runtime it was spawned on, then
/// leaves the group without committing and ends, so the broker frees the
/// partitions at once rather than at the session timeout. If that runtime
/// is gone, so is the task, and the session times out.
#[derive(Debug)]
pub(crate) struct Handle {
    commands: mpsc::Sender<Command>,
    pub(crate) topics: watch::Sender<Vec<String>>,
    pub(crate) view: watch::Receiver<View>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Starts the task for a consumer that subscribes to `topics`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub(crate) fn spawn(
        conn: Connection,
        settings: Settings,
        topics: Vec<String>,
        positions: Arc<Mutex<Positions>>,
        events: broadcast::Sender<RebalanceEvent>,
    ) -> Handle {
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (topics, topics_rx) = watch::channel(topics);
        let (view_tx, view) = watch::channel(View::default());
        let member = Member {
            conn,
            settings,
            positions,
            events,
            view: view_tx,
            topics: topics_rx,
            member_id: String::new(),
            epoch: 0,
            interval: MIN_HEARTBEAT_INTERVAL,
            last_answer: None,
            failures: 0,
            next_beat: Instant::now(),
            topics_check: Some(Instant::now()),
        };
        let task = tokio::spawn(member.run(commands_rx));
        Handle { commands, topics, view, task }
    }

    /// Why the membership failed, if it did; `Closed` if the task is gone
    /// for another reason.
    pub(crate) fn failure(&self) -> Option<Error> {
        if let Some(err) = &self.view.borrow().failed {
            return Some(err.clone());
        }
        self.task.is_finished().then_some(Error::Closed)
    }

    /// Sends a command and waits for its answer.
    pub(crate) async fn request(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<()>>) -> Command,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(command(reply)).await.is_err() {
            return Err(self.failure().unwrap_or(Error::Closed));
        }
        answer.await.unwrap_or_else(|_| Err(self.failure().unwrap_or(Error::Closed)))
    }
}

/// The task's state: the member's identity and what it needs to act.
struct Member {
    conn: Connection,
    settings: Settings,
    /// Shared with the consumer. A lock rather than messages to `poll`,
    /// because a revocation must take effect at once, whether or not the
    /// application is polling: the task removes the partition, and a fetch
    /// that `poll` applies afterwards finds it gone. Held only for
    /// bookkeeping, never across an await.
    positions: Arc<Mutex<Positions>>,
    events: broadcast::Sender<RebalanceEvent>,
    view: watch::Sender<View>,
    topics: watch::Receiver<Vec<String>>,
    /// Empty until the first answer, and again when rejoining.
    member_id: String,
    epoch: i32,
    interval: Duration,
    /// When a heartbeat was last answered; `None` while not a member.
    last_answer: Option<Instant>,
    /// Heartbeats failed in a row.
    failures: u32,
    next_beat: Instant,
    /// When to check next that the subscribed topics exist: at once after
    /// subscribing (before the first heartbeat) and after the topics change,
    /// then every `MISSING_TOPICS_CHECK` while some are missing; `None`
    /// once all were found.
    topics_check: Option<Instant>,
}

impl Member {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut next_commit = self.settings.auto_commit.map(|every| Instant::now() + every);
        loop {
            let auto_commit = async {
                match next_commit {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Commands first: a command still queued when the consumer
                // is dropped is carried out before the task leaves.
                biased;
                command = commands.recv() => match command {
                    // The consumer was dropped without `close`.
                    None => {
                        self.abandon().await;
                        return;
                    }
                    Some(Command::Commit(reply)) => {
                        let _ = reply.send(self.commit().await);
                    }
                    Some(Command::Close(reply)) => {
                        let _ = reply.send(self.close().await);
                        return;
                    }
                },
                changed = self.topics.changed() => {
                    if changed.is_err() {
                        // The consumer was dropped (the command channel,
                        // polled first, reports it unless a command was
                        // still queued).
                        self.abandon().await;
                        return;
                    }
                    self.next_beat = Instant::now();
                    self.topics_check = Some(Instant::now());
                }
                () = tokio::time::sleep_until(self.next_beat) => {
                    if let Err(err) = self.beat().await {
                        tracing::error!(group = %self.settings.group, error = %err, "the subscription failed; the consumer stops");
                        // A member already in the group (whose new topics
                        // are missing) hands its partitions over first.
                        if !self.member_id.is_empty()
                            && let Err(close) = self.close().await
                        {
                            tracing::warn!(group = %self.settings.group, error = %close, "could not commit and leave");
                        }
                        self.view.send_modify(|view| view.failed = Some(err));
                        return;
                    }
                }
                () = auto_commit => {
                    if let Err(err) = self.commit_owned().await {
                        tracing::warn!(group = %self.settings.group, error = %err, "auto-commit failed; trying again at the next interval");
                    }
                    next_commit = self.settings.auto_commit.map(|every| Instant::now() + every);
                }
            }
        }
    }

    fn session_timeout(&self) -> Duration {
        self.settings.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT)
    }

    /// The time one call may take: a call still pending after the session
    /// is useless, and the task must get back to heartbeating.
    fn call_budget(&self) -> Duration {
        self.settings.request_timeout.min(self.session_timeout())
    }

    /// One heartbeat (after checking the topics, when due), and what
    /// follows when it fails. Errors only when the subscription fails for
    /// good: the broker refuses it (an invalid argument: the same request
    /// would be refused again), or a topic is missing and the consumer was
    /// told to fail then.
    async fn beat(&mut self) -> Result<()> {
        let outcome = match self.check_topics().await {
            Ok(()) => self.heartbeat().await,
            Err(err) => Err(err),
        };
        let err = match outcome {
            Ok(()) => {
                self.failures = 0;
                return Ok(());
            }
            // Retrying cannot help: a bad request, a missing topic, or a group
            // id in use by members of another kind (Kafka's classic groups).
            Err(
                err @ (Error::InvalidArgument { .. }
                | Error::TopicNotFound { .. }
                | Error::FailedPrecondition { .. }),
            ) => {
                return Err(err);
            }
            Err(err) => err,
        };
        self.failures = self.failures.saturating_add(1);
        if let Some(last) = self.last_answer
            && last.elapsed() >= self.session_timeout()
        {
            self.lose_all("no heartbeat was answered for a whole session timeout");
        }
        // Jittered like every retry, but several attempts fit in a session,
        // so one lost heartbeat does not cost a short session.
        let delay = Backoff::default()
            .delay(self.failures - 1)
            .min(self.session_timeout() / 3)
            .max(MIN_HEARTBEAT_INTERVAL);
        tracing::warn!(group = %self.settings.group, error = %err, ?delay, "heartbeat failed; retrying");
        self.next_beat = Instant::now() + delay;
        Ok(())
    }

    /// When due, checks that every subscribed topic exists: the broker
    /// assigns nothing of a missing topic, and says nothing about it either.
    /// With [`MissingTopics::Fail`] a missing topic is an
    /// [`Error::TopicNotFound`], and a failed check is a failed heartbeat
    /// (it is retried, and the member does not join before it succeeds);
    /// with [`MissingTopics::Warn`] it is a warning, repeated every
    /// `MISSING_TOPICS_CHECK` while topics are missing, and a failed check
    /// is retried at the next heartbeat.
    async fn check_topics(&mut self) -> Result<()> {
        let now = Instant::now();
        if self.topics_check.is_none_or(|at| at > now) {
            return Ok(());
        }
        let fail = self.settings.missing_topics == MissingTopics::Fail;
        let opts = CallOptions { timeout: Some(self.call_budget()), ..CallOptions::new(Op::ListTopics) };
        let listed = self
            .conn
            .call(opts, v1::ListTopicsRequest {}, |req| {
                let mut client = self.conn.admin();
                async move { client.list_topics(req).await }
            })
            .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(err) if fail => return Err(err),
            Err(err) => {
                tracing::debug!(group = %self.settings.group, error = %err, "could not list topics; checking again at the next heartbeat");
                return Ok(());
            }
        };
        let existing: BTreeSet<&str> = listed.topics.iter().map(|t| t.name.as_str()).collect();
        let missing: Vec<String> =
            self.topics.borrow().iter().filter(|t| !existing.contains(t.as_str())).cloned().collect();
        let Some(first) = missing.first() else {
            self.topics_check = None;
            return Ok(());
        };
        if fail {
            return Err(Error::TopicNotFound { topic: first.clone() });
        }
        tracing::warn!(
            group = %self.settings.group,
            topics = ?missing,
            "subscribed topics do not exist: the consumer reads nothing of them until they are created \
             (checking again in {}s)",
            MISSING_TOPICS_CHECK.as_secs()
        );
        self.topics_check = Some(now + MISSING_TOPICS_CHECK);
        Ok(())
    }

    /// Sends a heartbeat and applies the answer: new partitions start,
    /// partitions missing from it are committed and released (and the next
    /// heartbeat, which reports the release, is due at once).
    async fn heartbeat(&mut self) -> Result<()> {
        let owned = self.positions.lock().partitions();
        let request = v1::HeartbeatRequest {
            group: self.settings.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            // Always sent: the same topics change nothing, and a member the
            // broker forgot (it restarted, or the session expired) is
            // re-admitted only with them.
            topics: self.topics.borrow().clone(),
            owned: topic_partitions_out(&owned),
            client_id: self.settings.client_id.clone(),
            session_timeout_ms: self
                .settings
                .session_timeout
                .map_or(0, |t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
        };
        // Not retried by the connection: the task has its own backoff, and
        // must look at the session in between.
        let opts = CallOptions { timeout: Some(self.call_budget()), ..CallOptions::new(Op::Heartbeat) };
        let response = self
            .conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.heartbeat(req).await }
            })
            .await?;
        if response.member_id.is_empty() {
            return Err(Error::protocol(Op::Heartbeat, "no member id"));
        }
        self.last_answer = Some(Instant::now());
        self.member_id = response.member_id;
        self.epoch = response.member_epoch;
        self.interval =
            Duration::from_millis(u64::from(response.heartbeat_interval_ms)).max(MIN_HEARTBEAT_INTERVAL);
        self.next_beat = Instant::now() + self.interval;

        let assignment = topic_partitions_in(response.assignment);
        let (added, revoked) = {
            let mut positions = self.positions.lock();
            let revoked = positions.revoke_except(&assignment);
            (positions.grant(&assignment), revoked)
        };
        if !added.is_empty() {
            tracing::info!(group = %self.settings.group, member = %self.member_id, partitions = ?added, "partitions assigned");
            let _ = self.events.send(RebalanceEvent::Assigned(added));
        }
        if !revoked.is_empty() {
            self.release(revoked).await;
            // Report the release at once: the new owner waits for it.
            self.next_beat = Instant::now();
        }
        // Published only when it changed: a `poll` waiting for records
        // looks at the assignment again on each change.
        let member_id = self.member_id.clone();
        self.view.send_if_modified(|view| {
            let changed = view.member_id.as_ref() != Some(&member_id) || view.assignment != assignment;
            view.member_id = Some(member_id);
            view.assignment = assignment;
            changed
        });
        Ok(())
    }

    /// Commits what was delivered from partitions the consumer just stopped
    /// reading. If the broker refuses (the member was fenced, or the broker
    /// forgot it), the partitions are noted as lost for `commit` to report.
    async fn release(&mut self, revoked: Vec<(TopicPartition, super::positions::Slot)>) {
        let offsets: Vec<CommittedOffset> = revoked
            .iter()
            .filter_map(|((topic, partition), slot)| {
                let delivered = slot.delivered.filter(|d| slot.committed != Some(*d))?;
                Some(CommittedOffset::new(topic.as_str(), *partition, delivered))
            })
            .collect();
        let outcome = if offsets.is_empty() { Ok(()) } else { self.send_commit(&offsets).await };
        if let Err(err) = outcome {
            tracing::warn!(
                group = %self.settings.group,
                error = %err,
                "could not commit revoked partitions; their records since the last commit will be delivered again"
            );
            let mut positions = self.positions.lock();
            for (partition, slot) in &revoked {
                positions.note_lost(partition.clone(), slot);
            }
        }
        let partitions: Vec<TopicPartition> = revoked.into_iter().map(|(tp, _)| tp).collect();
        tracing::info!(group = %self.settings.group, member = %self.member_id, ?partitions, "partitions revoked");
        let _ = self.events.send(RebalanceEvent::Revoked(partitions));
    }

    /// Drops every partition without committing, and starts over as a new
    /// member: the broker has surely given them away by now.
    fn lose_all(&mut self, why: &str) {
        let revoked = {
            let mut positions = self.positions.lock();
            let revoked = positions.revoke_all();
            for (partition, slot) in &revoked {
                positions.note_lost(partition.clone(), slot);
            }
            revoked
        };
        tracing::warn!(group = %self.settings.group, member = %self.member_id, why, "membership lost; rejoining");
        self.member_id.clear();
        self.epoch = 0;
        self.last_answer = None;
        self.view.send_modify(|view| {
            view.member_id = None;
            view.assignment.clear();
        });
        if !revoked.is_empty() {
            let _ =
                self.events.send(RebalanceEvent::Revoked(revoked.into_iter().map(|(tp, _)| tp).collect()));
        }
    }

    /// A commit as this member, under its current epoch.
    async fn send_commit(&self, offsets: &[CommittedOffset]) -> Result<()> {
        let request = v1::CommitOffsetsRequest {
            group: self.settings.group.clone(),
            offsets: offsets.iter().map(CommittedOffset::to_proto).collect(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
        };
        // Repeating a commit of the same offsets is harmless.
        let opts = CallOptions {
            topic: single_topic(offsets),
            retry: true,
            timeout: Some(self.call_budget()),
            ..CallOptions::new(Op::CommitOffsets)
        };
        self.conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.commit_offsets(req).await }
            })
            .await?;
        Ok(())
    }

    /// Commits the delivered position of every owned partition that moved
    /// since its last commit. Refused as stale, it heartbeats (which
    /// refreshes the epoch and releases what was revoked) and tries once
    /// more with what the member still owns.
    async fn commit_owned(&mut self) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let offsets = self.positions.lock().uncommitted();
        if offsets.is_empty() {
            return Ok(());
        }
        let refused = match self.send_commit(&plain(&offsets)).await {
            Ok(()) => {
                self.positions.lock().committed(&offsets);
                return Ok(());
            }
            Err(Error::FailedPrecondition { message }) => message,
            Err(err) => return Err(err),
        };
        tracing::debug!(group = %self.settings.group, %refused, "commit refused; heartbeating and retrying once");
        if let Err(err) = self.heartbeat().await {
            tracing::warn!(group = %self.settings.group, error = %err, "heartbeat after a refused commit failed");
            return Err(Error::FailedPrecondition { message: refused });
        }
        let offsets = self.positions.lock().uncommitted();
        if offsets.is_empty() || self.member_id.is_empty() {
            return Ok(());
        }
        self.send_commit(&plain(&offsets)).await?;
        self.positions.lock().committed(&offsets);
        Ok(())
    }

    /// `Consumer::commit`: commits, then reports partitions lost since the
    /// last report with records delivered but never committed. A commit
    /// that fails keeps the report for the next one, so a retried commit
    /// that succeeds still says what was lost.
    async fn commit(&mut self) -> Result<()> {
        self.commit_owned().await?;
        let lost = self.positions.lock().take_lost();
        if lost.is_empty() { Ok(()) } else { Err(lost_error(&self.settings.group, &lost)) }
    }

    /// `Consumer::close`: commits, then leaves, whatever the commit did.
    async fn close(&mut self) -> Result<()> {
        let committed = self.commit().await;
        let left = self.leave().await;
        let revoked = self.positions.lock().revoke_all();
        if !revoked.is_empty() {
            let _ =
                self.events.send(RebalanceEvent::Revoked(revoked.into_iter().map(|(tp, _)| tp).collect()));
        }
        self.view.send_modify(|view| {
            view.member_id = None;
            view.assignment.clear();
        });
        committed.and(left)
    }

    /// The consumer was dropped without `close`: leaves without committing
    /// (the application may not have finished with what was delivered), so
    /// the partitions move at once and their new owners start at the last
    /// commit.
    async fn abandon(&mut self) {
        if !self.member_id.is_empty() {
            tracing::info!(group = %self.settings.group, member = %self.member_id, "consumer dropped without close; leaving the group without committing");
        }
        if let Err(err) = self.leave().await {
            tracing::warn!(group = %self.settings.group, error = %err, "could not leave the group; its partitions move at the session timeout");
        }
        let revoked = self.positions.lock().revoke_all();
        if !revoked.is_empty() {
            let _ =
                self.events.send(RebalanceEvent::Revoked(revoked.into_iter().map(|(tp, _)| tp).collect()));
        }
    }

    /// Tells the broker the member leaves, so its partitions move at once.
    async fn leave(&mut self) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let request = v1::HeartbeatRequest {
            group: self.settings.group.clone(),
            member_id: std::mem::take(&mut self.member_id),
            member_epoch: -1,
            ..Default::default()
        };
        // Leaving twice is harmless: the broker ignores an unknown member.
        let opts = CallOptions { retry: true, ..CallOptions::new(Op::Heartbeat) };
        self.conn
            .call(opts, request, |req| {
                let mut client = self.conn.group();
                async move { client.heartbeat(req).await }
            })
            .await?;
        tracing::info!(group = %self.settings.group, "left the group");
        Ok(())
    }
}

fn plain(offsets: &[ToCommit]) -> Vec<CommittedOffset> {
    offsets.iter().map(|c| c.offset.clone()).collect()
}

/// The error `commit` returns for partitions lost with uncommitted records.
fn lost_error(group: &str, lost: &BTreeMap<TopicPartition, Lost>) -> Error {
    let partitions: Vec<String> = lost
        .iter()
        .map(|((topic, partition), l)| match l.committed {
            Some(c) => format!("{topic}/{partition} (delivered up to offset {}, committed {c})", l.delivered),
            None => {
                format!("{topic}/{partition} (delivered up to offset {}, nothing committed)", l.delivered)
            }
        })
        .collect();
    Error::FailedPrecondition {
        message: format!(
            "the consumer lost {} of group {group:?} before committing what it delivered (its session expired, \
             or the broker refused the commit as stale): the records after the committed offset will be \
             delivered again to the partition's new owner",
            partitions.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lost_error_names_each_partition_and_its_offsets() {
        let mut lost = BTreeMap::new();
        lost.insert(("t".to_owned(), 1), Lost { delivered: 8, committed: Some(3) });
        lost.insert(("t".to_owned(), 2), Lost { delivered: 4, committed: None });
        let err = lost_error("g", &lost);
        let Error::FailedPrecondition { message } = &err else { panic!("{err:?}") };
        assert!(message.contains("t/1 (delivered up to offset 8, committed 3)"), "{message}");
        assert!(message.contains("t/2 (delivered up to offset 4, nothing committed)"), "{message}");
        assert!(message.contains("\"g\""), "{message}");
    }

    /// A consumer pointed at a port that refuses connections keeps
    /// heartbeating with backoff and never claims to have joined.
    #[tokio::test]
    async fn an_unreachable_broker_is_retried_without_joining() {
        let (_reserved, addr) = crate::test_support::refusing_addr();
        let conn =
            crate::connection::ConnectionConfig::new(addr.to_string()).connect().expect("valid endpoint");
        let positions = Arc::new(Mutex::new(Positions::default()));
        let (events, _) = broadcast::channel(4);
        let settings = Settings {
            group: "g".into(),
            client_id: "c".into(),
            session_timeout: Some(Duration::from_millis(300)),
            auto_commit: Some(Duration::from_millis(50)),
            request_timeout: Duration::from_secs(1),
            missing_topics: MissingTopics::Warn,
        };
        let handle = Handle::spawn(conn, settings, vec!["t".into()], positions, events);
        let mut view = handle.view.clone();
        let outcome =
            tokio::time::timeout(Duration::from_millis(500), view.wait_for(|v| v.member_id.is_some())).await;
        assert!(outcome.is_err(), "joined an unreachable broker");
        assert!(handle.failure().is_none(), "a connection failure is not fatal");
        // Nothing owned, so a commit has nothing to send.
        handle.request(Command::Commit).await.expect("nothing to commit");
        handle.request(Command::Close).await.expect("nothing to leave");
    }
}
