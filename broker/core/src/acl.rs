//! Who may do what: access-control entries (ACLs) and the [`Authorizer`]
//! that every adapter asks before it serves a request.
//!
//! An entry is (principal, resource type, literal name or prefix,
//! operation, allow or deny). A request is one operation on one resource:
//! it is allowed when some entry allows it and none denies it (deny wins),
//! and denied when no entry speaks of it. Superusers are allowed everything.
//! As in Kafka, an entry allowing `read`, `write`, `delete` or `alter` on a
//! resource allows `describe` on it too. With authentication off, nothing is
//! checked. Entries are stored (`brooklet-storage`'s `acls` tree) and
//! survive a restart.
//!
//! It knows no protocol: adapters map each of their calls to an
//! (operation, resource) pair and a [`Denied`] to their own error.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brooklet_storage::{AclStore, GroupCommit, StoredAcl};
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::users::{Principal, check_name};

/// The longest resource name or prefix in an entry, in bytes.
pub const MAX_ACL_NAME_BYTES: usize = 255;

/// What an entry speaks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The broker itself: its users, ACLs and status.
    Cluster,
}

impl ResourceType {
    /// Every type, in order.
    pub const ALL: [ResourceType; 3] = [ResourceType::Topic, ResourceType::Group, ResourceType::Cluster];

    /// Its name: `topic`, `group` or `cluster`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
        }
    }

    /// The type of this name, if it is one.
    pub fn from_name(name: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// How an entry's name matches a resource's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// The name itself, or `*` for every name.
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

impl PatternType {
    /// Its name: `literal` or `prefixed`.
    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "literal",
            PatternType::Prefixed => "prefixed",
        }
    }

    /// The pattern type of this name, if it is one.
    pub fn from_name(name: &str) -> Option<PatternType> {
        [PatternType::Literal, PatternType::Prefixed].into_iter().find(|p| p.name() == name)
    }
}

/// What a request does to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Fetch records; join a group and commit its offsets.
    Read,
    /// Produce records.
    Write,
    /// Create a topic.
    Create,
    /// Delete a topic or a group.
    Delete,
    /// See that it exists and how it is: metadata, offsets, configs.
    Describe,
    /// Change it: a topic's config; the cluster's users and ACLs.
    Alter,
    /// In an entry: every operation.
    All,
}

impl Operation {
    /// Every operation an entry may name, in order.
    pub const ALL: [Operation; 7] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Describe,
        Operation::Alter,
        Operation::All,
    ];

    /// Its name, e.g. `read`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Describe => "describe",
            Operation::Alter => "alter",
            Operation::All => "all",
        }
    }

    /// The operation of this name, if it is one.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Whether an entry naming `self` speaks of a request doing `requested`
    /// (`allow`: in an allowing entry, which implies `describe`).
    fn covers(self, requested: Operation, allow: bool) -> bool {
        self == Operation::All
            || self == requested
            || (allow
                && requested == Operation::Describe
                && matches!(self, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether an entry allows or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Allows what it speaks of, unless an entry denies it.
    Allow,
    /// Denies what it speaks of, whatever allows it.
    Deny,
}

impl Permission {
    /// Its name: `allow` or `deny`.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        }
    }

    /// The permission of this name, if it is one.
    pub fn from_name(name: &str) -> Option<Permission> {
        [Permission::Allow, Permission::Deny].into_iter().find(|p| p.name() == name)
    }
}

/// One access-control entry, valid (made by [`Acl::new`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    principal: String,
    resource_type: ResourceType,
    pattern: PatternType,
    name: String,
    operation: Operation,
    permission: Permission,
}

impl Acl {
    /// An entry, checked: `principal` is a user name (`User:` before it is
    /// dropped) or `*` for every authenticated user; `name` is a topic or
    /// group name, a prefix of one, or (literal) `*` for every name; a
    /// cluster entry has no name (`""`, `*` and `kafka-cluster` are taken
    /// for none).
    pub fn new(
        principal: &str,
        resource_type: ResourceType,
        pattern: PatternType,
        name: &str,
        operation: Operation,
        permission: Permission,
    ) -> Result<Acl> {
        let principal = principal.strip_prefix("User:").unwrap_or(principal);
        if principal != "*" {
            check_name(principal).map_err(|e| match e {
                Error::InvalidArgument { reason, .. } => Error::invalid("principal", reason),
                other => other,
            })?;
        }
        let name = match resource_type {
            ResourceType::Cluster => {
                if !matches!(name, "" | "*" | "kafka-cluster") {
                    return Err(Error::invalid(
                        "name",
                        format!("a cluster entry names no resource, not `{name}`"),
                    ));
                }
                if pattern == PatternType::Prefixed {
                    return Err(Error::invalid("pattern", "a cluster entry cannot be prefixed"));
                }
                ""
            }
            ResourceType::Topic | ResourceType::Group => {
                if name.is_empty() || name.len() > MAX_ACL_NAME_BYTES {
                    return Err(Error::invalid(
                        "name",
                        format!(
                            "a {} name or prefix has 1 to {MAX_ACL_NAME_BYTES} bytes, `{name}` has {}",
                            resource_type.name(),
                            name.len()
                        ),
                    ));
                }
                if let Some(c) = name.chars().find(|c| c.is_control()) {
                    return Err(Error::invalid("name", format!("control character {c:?} in `{name}`")));
                }
                if pattern == PatternType::Prefixed && name == "*" {
                    return Err(Error::invalid(
                        "name",
                        "`*` is every name only in a literal entry; a prefixed one would match names that \
                         start with `*`",
                    ));
                }
                name
            }
        };
        Ok(Acl {
            principal: principal.to_owned(),
            resource_type,
            pattern,
            name: name.to_owned(),
            operation,
            permission,
        })
    }

    /// The user name, or `*`.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The resource type.
    pub fn resource_type(&self) -> ResourceType {
        self.resource_type
    }

    /// Literal or prefixed.
    pub fn pattern(&self) -> PatternType {
        self.pattern
    }

    /// The name or prefix (`*`: every name; empty for the cluster).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// Allow or deny.
    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// Whether this entry speaks of `user` doing `operation` on `resource`.
    fn matches(&self, user: &str, operation: Operation, resource: &Resource<'_>) -> bool {
        if self.principal != "*" && self.principal != user {
            return false;
        }
        if !self.operation.covers(operation, self.permission == Permission::Allow) {
            return false;
        }
        match (resource, self.resource_type) {
            (Resource::Cluster, ResourceType::Cluster) => true,
            (Resource::Topic(name), ResourceType::Topic) | (Resource::Group(name), ResourceType::Group) => {
                match self.pattern {
                    PatternType::Literal => self.name == "*" || self.name == *name,
                    PatternType::Prefixed => name.starts_with(&self.name),
                }
            }
            _ => false,
        }
    }

    fn to_stored(&self) -> StoredAcl {
        StoredAcl {
            principal: self.principal.clone(),
            resource_type: self.resource_type.name().to_owned(),
            pattern: self.pattern.name().to_owned(),
            name: self.name.clone(),
            operation: self.operation.name().to_owned(),
            permission: self.permission.name().to_owned(),
        }
    }

    fn from_stored(stored: &StoredAcl) -> Result<Acl> {
        let field =
            |what: &str, value: &str| Error::invalid("stored acl", format!("unknown {what} `{value}`"));
        Acl::new(
            &stored.principal,
            ResourceType::from_name(&stored.resource_type)
                .ok_or_else(|| field("resource type", &stored.resource_type))?,
            PatternType::from_name(&stored.pattern).ok_or_else(|| field("pattern", &stored.pattern))?,
            &stored.name,
            Operation::from_name(&stored.operation).ok_or_else(|| field("operation", &stored.operation))?,
            Permission::from_name(&stored.permission)
                .ok_or_else(|| field("permission", &stored.permission))?,
        )
    }
}

impl fmt::Display for Acl {
    /// E.g. `allow User:alice read topic prefixed orders.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let principal =
            if self.principal == "*" { "User:*".to_owned() } else { format!("User:{}", self.principal) };
        write!(f, "{} {principal} {} {}", self.permission.name(), self.operation, self.resource_type.name())?;
        if self.resource_type != ResourceType::Cluster {
            write!(f, " {} {}", self.pattern.name(), self.name)?;
        }
        Ok(())
    }
}

/// What a request acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A topic, by name (whether or not it exists).
    Topic(&'a str),
    /// A consumer group, by id.
    Group(&'a str),
    /// The broker.
    Cluster,
}

impl Resource<'_> {
    /// Its type.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resource::Topic(_) => ResourceType::Topic,
            Resource::Group(_) => ResourceType::Group,
            Resource::Cluster => ResourceType::Cluster,
        }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Topic(name) => write!(f, "topic `{name}`"),
            Resource::Group(name) => write!(f, "group `{name}`"),
            Resource::Cluster => f.write_str("the cluster"),
        }
    }
}

/// A request refused by the [`Authorizer`]. Its message names the
/// operation and the resource, and says nothing of whether the resource
/// exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct Denied {
    /// Who asked: `None` when the request carried no valid identity.
    pub principal: Option<Principal>,
    /// What it asked to do.
    pub operation: Operation,
    /// What it asked to do it to.
    pub resource_type: ResourceType,
    /// The topic or group name (empty for the cluster).
    pub resource_name: String,
}

impl Denied {
    /// The resource, as the message names it.
    pub fn resource(&self) -> Resource<'_> {
        match self.resource_type {
            ResourceType::Topic => Resource::Topic(&self.resource_name),
            ResourceType::Group => Resource::Group(&self.resource_name),
            ResourceType::Cluster => Resource::Cluster,
        }
    }

    fn message(&self) -> String {
        match &self.principal {
            Some(p) => format!("{p} is not allowed to {} {}", self.operation, self.resource()),
            None => format!("authentication is required to {} {}", self.operation, self.resource()),
        }
    }
}

/// The access-control entries, stored and cached. Cloning shares them.
#[derive(Clone)]
pub struct Acls {
    store: AclStore,
    commit: GroupCommit,
    entries: Arc<RwLock<Arc<Vec<Acl>>>>,
}

impl fmt::Debug for Acls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acls").field("entries", &self.entries.read().len()).finish_non_exhaustive()
    }
}

impl Acls {
    pub(crate) fn open(store: AclStore, commit: GroupCommit) -> Result<Acls> {
        let entries = Self::load(&store)?;
        Ok(Acls { store, commit, entries: Arc::new(RwLock::new(Arc::new(entries))) })
    }

    fn load(store: &AclStore) -> Result<Vec<Acl>> {
        let mut entries = store.list()?.iter().map(Acl::from_stored).collect::<Result<Vec<_>>>()?;
        entries.sort();
        Ok(entries)
    }

    /// Adds `acl`; on disk when this returns. False if it existed already.
    pub async fn add(&self, acl: &Acl) -> Result<bool> {
        let added = self.store.insert(&acl.to_stored())?;
        self.changed().await?;
        Ok(added)
    }

    /// Removes `acl`; on disk when this returns. False if it did not exist.
    pub async fn remove(&self, acl: &Acl) -> Result<bool> {
        let removed = self.store.remove(&acl.to_stored())?;
        self.changed().await?;
        Ok(removed)
    }

    /// Every entry, sorted.
    pub fn list(&self) -> Arc<Vec<Acl>> {
        self.entries.read().clone()
    }

    async fn changed(&self) -> Result<()> {
        let entries = Self::load(&self.store)?;
        *self.entries.write() = Arc::new(entries);
        Ok(self.commit.sync().await?)
    }
}

/// Whether `entries` let `user` do `operation` on `resource`: some entry
/// allows it and none denies it.
fn decide(entries: &[Acl], user: &str, operation: Operation, resource: &Resource<'_>) -> bool {
    let mut allowed = false;
    for acl in entries.iter().filter(|a| a.matches(user, operation, resource)) {
        match acl.permission {
            Permission::Deny => return false,
            Permission::Allow => allowed = true,
        }
    }
    allowed
}

/// Counts a reported denial, with the protocol it came over (the metrics
/// live outside the core).
pub type DenialCounter = Arc<dyn Fn(&'static str, &Denied) + Send + Sync>;

/// Decides whether a principal may do an operation on a resource: see the
/// module docs. Cloning shares it.
#[derive(Clone)]
pub struct Authorizer {
    acls: Acls,
    enforced: bool,
    superusers: Arc<[String]>,
    logged: Arc<Mutex<HashMap<DenialKey, Logged>>>,
    count: Option<DenialCounter>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("acls", &self.acls)
            .field("enforced", &self.enforced)
            .field("superusers", &self.superusers)
            .finish_non_exhaustive()
    }
}

/// Denials are logged at most once per principal, operation and resource
/// in this time; the next line says how many were not.
pub const DENIAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Rate-limited denials remembered at most; past it the memory is cleared.
const MAX_LOGGED_DENIALS: usize = 10_000;

type DenialKey = (Option<String>, Operation, ResourceType, String);

#[derive(Debug)]
struct Logged {
    at: Instant,
    suppressed: u64,
}

impl Authorizer {
    /// Checks requests against `acls` when `enforced` (with `--auth
    /// required`); `superusers` are allowed everything.
    pub fn new(acls: Acls, enforced: bool, superusers: &[String]) -> Authorizer {
        Authorizer { acls, enforced, superusers: superusers.into(), logged: Arc::default(), count: None }
    }

    /// This authorizer, with every denial [reported](Self::report_denial)
    /// also given to `count`.
    pub fn counting(mut self, count: DenialCounter) -> Authorizer {
        self.count = Some(count);
        self
    }

    /// Allows everything (authentication off).
    pub fn allow_all(acls: Acls) -> Authorizer {
        Authorizer::new(acls, false, &[])
    }

    /// Whether requests are checked at all.
    pub fn enforced(&self) -> bool {
        self.enforced
    }

    /// Whether `principal` is a superuser.
    pub fn is_superuser(&self, principal: &Principal) -> bool {
        self.superusers.iter().any(|s| s == principal.name())
    }

    /// `Ok` if `principal` may do `operation` on `resource`; else why not.
    /// A request with no principal is denied as unauthenticated when
    /// requests are checked.
    pub fn check(
        &self,
        principal: Option<&Principal>,
        operation: Operation,
        resource: Resource<'_>,
    ) -> std::result::Result<(), Denied> {
        if self.allows(principal, operation, resource) {
            return Ok(());
        }
        let resource_name = match resource {
            Resource::Topic(name) | Resource::Group(name) => name.to_owned(),
            Resource::Cluster => String::new(),
        };
        Err(Denied {
            principal: principal.cloned(),
            operation,
            resource_type: resource.resource_type(),
            resource_name,
        })
    }

    /// Whether `principal` may do `operation` on `resource` (for filtering
    /// lists: nothing is logged or counted).
    pub fn allows(
        &self,
        principal: Option<&Principal>,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool {
        match self.settled(principal) {
            Ok(principal) => decide(&self.acls.list(), principal.name(), operation, &resource),
            Err(allowed) => allowed,
        }
    }

    /// The principal whose entries decide, or the decision without them:
    /// allowed when nothing is checked or for a superuser, denied without a
    /// principal.
    fn settled<'p>(&self, principal: Option<&'p Principal>) -> Result<&'p Principal, bool> {
        match principal {
            _ if !self.enforced => Err(true),
            None => Err(false),
            Some(p) if self.is_superuser(p) => Err(true),
            Some(p) => Ok(p),
        }
    }

    /// `Ok` if `principal` may get an idempotent producer's id: it may
    /// write the cluster, or (as Kafka allows) some topic.
    pub fn check_producer_id(&self, principal: Option<&Principal>) -> std::result::Result<(), Denied> {
        if self.allows_any(principal, Operation::Write, ResourceType::Topic) {
            return Ok(());
        }
        self.check(principal, Operation::Write, Resource::Cluster)
    }

    /// Whether `principal` may do `operation` on some resource of
    /// `resource_type`.
    fn allows_any(
        &self,
        principal: Option<&Principal>,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let principal = match self.settled(principal) {
            Ok(principal) => principal,
            Err(allowed) => return allowed,
        };
        self.acls.list().iter().any(|a| {
            a.permission == Permission::Allow
                && a.resource_type == resource_type
                && (a.principal == "*" || a.principal == principal.name())
                && a.operation.covers(operation, true)
        })
    }

    /// Counts `denied`, of a request from `peer` over `protocol` (`grpc`,
    /// `kafka`, `console`), and logs it: the principal, peer, operation and
    /// resource, at most once every [`DENIAL_LOG_INTERVAL`] for the same
    /// principal, operation and resource.
    pub fn report_denial(&self, denied: &Denied, protocol: &'static str, peer: Option<SocketAddr>) {
        if let Some(count) = &self.count {
            count(protocol, denied);
        }
        let key = (
            denied.principal.as_ref().map(|p| p.name().to_owned()),
            denied.operation,
            denied.resource_type,
            denied.resource_name.clone(),
        );
        let now = Instant::now();
        let suppressed = {
            let mut logged = self.logged.lock();
            if logged.len() >= MAX_LOGGED_DENIALS && !logged.contains_key(&key) {
                logged.clear();
            }
            match logged.get_mut(&key) {
                Some(l) if now.duration_since(l.at) < DENIAL_LOG_INTERVAL => {
                    l.suppressed += 1;
                    return;
                }
                Some(l) => std::mem::replace(l, Logged { at: now, suppressed: 0 }).suppressed,
                None => {
                    logged.insert(key, Logged { at: now, suppressed: 0 });
                    0
                }
            }
        };
        let principal = denied.principal.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        tracing::warn!(
            protocol,
            %principal,
            %peer,
            operation = denied.operation.name(),
            resource = %denied.resource(),
            suppressed,
            "denied: {denied}"
        );
    }

    /// The entries.
    pub fn acls(&self) -> &Acls {
        &self.acls
    }

    /// The superusers' names.
    pub fn superusers(&self) -> &[String] {
        &self.superusers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        principal: &str,
        t: ResourceType,
        p: PatternType,
        name: &str,
        op: Operation,
        perm: Permission,
    ) -> Acl {
        Acl::new(principal, t, p, name, op, perm).unwrap()
    }

    #[test]
    fn deny_wins_prefixes_and_wildcards_match_and_nothing_is_allowed_by_default() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let entries = vec![
            acl("alice", Topic, Prefixed, "orders.", Write, Allow),
            acl("alice", Topic, Literal, "orders.secret", All, Deny),
            acl("*", Topic, Literal, "public", Read, Allow),
            acl("bob", Group, Literal, "*", Read, Allow),
            acl("User:carol", Cluster, Literal, "", Alter, Allow),
        ];
        assert!(decide(&entries, "alice", Write, &Resource::Topic("orders.eu")));
        assert!(decide(&entries, "alice", Describe, &Resource::Topic("orders.eu")), "write implies describe");
        assert!(!decide(&entries, "alice", Read, &Resource::Topic("orders.eu")), "not read");
        assert!(!decide(&entries, "alice", Write, &Resource::Topic("orders.secret")), "deny wins");
        assert!(!decide(&entries, "alice", Write, &Resource::Topic("orders")), "a prefix is a prefix");
        assert!(decide(&entries, "dave", Read, &Resource::Topic("public")), "* is every user");
        assert!(!decide(&entries, "dave", Read, &Resource::Topic("publicity")), "literal is exact");
        assert!(decide(&entries, "bob", Read, &Resource::Group("any")), "* is every name");
        assert!(!decide(&entries, "bob", Read, &Resource::Topic("any")), "a group entry is not a topic one");
        assert!(decide(&entries, "carol", Alter, &Resource::Cluster), "User: is dropped");
        assert!(decide(&entries, "carol", Describe, &Resource::Cluster));
        assert!(!decide(&entries, "carol", Create, &Resource::Topic("x")));
        assert!(decide(&entries, "nobody", Describe, &Resource::Topic("public")), "read implies describe");
        assert!(!decide(&[], "alice", Read, &Resource::Topic("x")), "nothing is allowed by default");
        // A deny of read leaves describe alone; a deny of all does not.
        let entries = vec![
            acl("alice", Topic, Literal, "t", All, Allow),
            acl("alice", Topic, Literal, "t", Read, Deny),
        ];
        assert!(decide(&entries, "alice", Describe, &Resource::Topic("t")));
        assert!(!decide(&entries, "alice", Read, &Resource::Topic("t")));
    }

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        use Operation::*;
        use Permission::*;
        let err = |r: Result<Acl>| match r.unwrap_err() {
            Error::InvalidArgument { field, reason } => format!("{field}: {reason}"),
            other => panic!("{other:?}"),
        };
        let e = err(Acl::new("", ResourceType::Topic, PatternType::Literal, "t", Read, Allow));
        assert!(e.starts_with("principal: "), "{e}");
        let e = err(Acl::new("a b", ResourceType::Topic, PatternType::Literal, "t", Read, Allow));
        assert!(e.starts_with("principal: "), "{e}");
        let e = err(Acl::new("a", ResourceType::Topic, PatternType::Literal, "", Read, Allow));
        assert!(e.starts_with("name: ") && e.contains("1 to 255 bytes"), "{e}");
        let long = "x".repeat(MAX_ACL_NAME_BYTES + 1);
        assert!(
            err(Acl::new("a", ResourceType::Group, PatternType::Literal, &long, Read, Allow))
                .starts_with("name: ")
        );
        let e = err(Acl::new("a", ResourceType::Topic, PatternType::Prefixed, "*", Read, Allow));
        assert!(e.starts_with("name: "), "{e}");
        let e = err(Acl::new("a", ResourceType::Cluster, PatternType::Literal, "orders", Alter, Allow));
        assert!(e.starts_with("name: "), "{e}");
        let e = err(Acl::new("a", ResourceType::Cluster, PatternType::Prefixed, "", Alter, Allow));
        assert!(e.starts_with("pattern: "), "{e}");
        let ok = Acl::new("a", ResourceType::Cluster, PatternType::Literal, "kafka-cluster", Alter, Allow)
            .unwrap();
        assert_eq!(ok.name(), "");
        assert_eq!(ok.to_string(), "allow User:a alter cluster");
    }

    /// Entries are durable and read again on open; the authorizer checks
    /// them only when enforced, lets superusers through, and denies a
    /// request with no principal as unauthenticated.
    #[tokio::test]
    async fn entries_survive_a_reopen_and_the_authorizer_applies_them() {
        use brooklet_storage::{Storage, StorageConfig};
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            path: dir.path().to_path_buf(),
            cache_capacity: 1 << 20,
            flush_every_ms: None,
            flush_max_delay: Duration::ZERO,
        };
        let open = |tasks: &tokio_util::task::TaskTracker| {
            let storage = Storage::open(&config).unwrap();
            Acls::open(storage.acls(), storage.group_commit(tasks)).unwrap()
        };
        let write =
            acl("alice", ResourceType::Topic, PatternType::Literal, "t", Operation::Write, Permission::Allow);
        {
            let tasks = tokio_util::task::TaskTracker::new();
            let acls = open(&tasks);
            assert!(acls.add(&write).await.unwrap());
            assert!(!acls.add(&write).await.unwrap(), "added once");
            let other = acl(
                "bob",
                ResourceType::Group,
                PatternType::Prefixed,
                "g",
                Operation::Read,
                Permission::Deny,
            );
            assert!(acls.add(&other).await.unwrap());
            assert!(acls.remove(&other).await.unwrap());
            assert!(!acls.remove(&other).await.unwrap(), "removed once");
            drop(acls);
            tasks.close();
            tasks.wait().await;
        }
        let tasks = tokio_util::task::TaskTracker::new();
        let acls = open(&tasks);
        assert_eq!(*acls.list(), vec![write], "kept across a reopen");

        let (alice, bob, root) = (Principal::user("alice"), Principal::user("bob"), Principal::user("root"));
        let topic = Resource::Topic("t");
        let off = Authorizer::allow_all(acls.clone());
        assert!(off.check(None, Operation::Delete, topic).is_ok(), "nothing is checked without auth");
        let on = Authorizer::new(acls, true, &["root".to_owned()]);
        assert!(on.check(Some(&alice), Operation::Write, topic).is_ok());
        assert!(on.check(Some(&root), Operation::Delete, Resource::Cluster).is_ok(), "a superuser");
        let denied = on.check(Some(&bob), Operation::Write, topic).unwrap_err();
        assert_eq!(denied.principal, Some(bob.clone()));
        let unauthenticated = on.check(None, Operation::Write, topic).unwrap_err();
        assert_eq!(unauthenticated.principal, None);
        assert!(on.allows_any(Some(&alice), Operation::Write, ResourceType::Topic));
        assert!(!on.allows_any(Some(&bob), Operation::Write, ResourceType::Topic));
        // Logging a denial many times is rate-limited, not an error.
        for _ in 0..3 {
            on.report_denial(&denied, "test", None);
        }
        assert_eq!(on.logged.lock().values().map(|l| l.suppressed).sum::<u64>(), 2);
    }

    #[test]
    fn a_denial_names_the_operation_and_the_resource() {
        let denied = Denied {
            principal: Some(Principal::user("bob")),
            operation: Operation::Write,
            resource_type: ResourceType::Topic,
            resource_name: "orders".into(),
        };
        assert_eq!(denied.to_string(), "User:bob is not allowed to write topic `orders`");
        let denied = Denied { principal: None, ..denied };
        assert_eq!(denied.to_string(), "authentication is required to write topic `orders`");
    }
}
