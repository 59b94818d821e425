//! Access-control entries as [`Admin`](crate::Admin) manages them:
//! [`AclEntry`] and its parts, typed, with the broker's names for them
//! (`read`, `topic`, `prefixed`…) as their `Display` and `FromStr`.

use std::fmt;
use std::str::FromStr;

use brooklet_proto::v1;

use crate::error::{Error, Op, Result};

/// Declares a field enum with its names, `Display`, `FromStr` and `ALL`.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The broker's name for it.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            /// The value of this name (case-insensitive).
            fn from_str(s: &str) -> Result<$name> {
                $name::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.name()).collect();
                    Error::InvalidArgument {
                        message: format!("{}: `{s}` is not one of {}", $what, names.join(", ")),
                    }
                })
            }
        }
    };
}

named! {
    /// What an entry speaks of.
    AclResourceType, "resource type" {
        /// A topic.
        Topic => "topic",
        /// A consumer group.
        Group => "group",
        /// The broker itself: its users, ACLs and status.
        Cluster => "cluster",
    }
}

named! {
    /// How an entry's name matches resource names.
    AclPattern, "pattern" {
        /// The name itself, or `*` for every name.
        Literal => "literal",
        /// Every name starting with it.
        Prefixed => "prefixed",
    }
}

named! {
    /// What an entry allows or denies.
    AclOperation, "operation" {
        /// Fetch and subscribe; join a group, commit and reset its offsets.
        Read => "read",
        /// Produce.
        Write => "write",
        /// Create a topic.
        Create => "create",
        /// Delete a topic or a group.
        Delete => "delete",
        /// Describe: metadata, offsets, lists.
        Describe => "describe",
        /// Change a topic's config; the cluster's users and ACLs.
        Alter => "alter",
        /// Every operation.
        All => "all",
    }
}

named! {
    /// Whether an entry allows or denies.
    AclPermission, "permission" {
        /// Allows, unless an entry denies.
        Allow => "allow",
        /// Denies, whatever allows.
        Deny => "deny",
    }
}

/// One access-control entry: `principal` may (or, denied, may not) do
/// `operation` on the resources of `resource_type` that `pattern` and
/// `name` match.
///
/// ```
/// use brooklet_client::{AclEntry, AclOperation, AclResourceType};
///
/// let entry = AclEntry::allow("alice", AclResourceType::Topic, "orders.", AclOperation::Write).prefixed();
/// assert_eq!(entry.to_string(), "allow User:alice write topic prefixed orders.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclEntry {
    /// A user name, or `*` for every authenticated user (`User:alice` is
    /// taken for `alice`).
    pub principal: String,
    /// Topic, group or cluster.
    pub resource_type: AclResourceType,
    /// Literal or prefixed.
    pub pattern: AclPattern,
    /// A name, a prefix, or (literal) `*` for every name; empty for the
    /// cluster.
    pub name: String,
    /// The operation.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

impl AclEntry {
    /// An entry allowing `principal` to do `operation` on the resource
    /// `name` (literal; empty for the cluster).
    pub fn allow(
        principal: impl Into<String>,
        resource_type: AclResourceType,
        name: impl Into<String>,
        operation: AclOperation,
    ) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            resource_type,
            pattern: AclPattern::Literal,
            name: name.into(),
            operation,
            permission: AclPermission::Allow,
        }
    }

    /// The same entry matching every name that starts with its name.
    pub fn prefixed(mut self) -> AclEntry {
        self.pattern = AclPattern::Prefixed;
        self
    }

    /// The same entry, denying.
    pub fn deny(mut self) -> AclEntry {
        self.permission = AclPermission::Deny;
        self
    }

    pub(crate) fn to_proto(&self) -> v1::Acl {
        v1::Acl {
            principal: self.principal.clone(),
            resource_type: self.resource_type.name().to_owned(),
            pattern: self.pattern.name().to_owned(),
            name: self.name.clone(),
            operation: self.operation.name().to_owned(),
            permission: self.permission.name().to_owned(),
        }
    }

    pub(crate) fn from_proto(acl: v1::Acl) -> Result<AclEntry> {
        let field = |e: Error| Error::protocol(Op::ListAcls, e);
        Ok(AclEntry {
            resource_type: acl.resource_type.parse().map_err(field)?,
            pattern: acl.pattern.parse().map_err(field)?,
            operation: acl.operation.parse().map_err(field)?,
            permission: acl.permission.parse().map_err(field)?,
            principal: acl.principal,
            name: acl.name,
        })
    }
}

impl fmt::Display for AclEntry {
    /// One line, as `brooklet acl list` prints it: e.g. `allow User:alice
    /// write topic prefixed orders.`, or `allow User:admin alter cluster`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let principal = self.principal.strip_prefix("User:").unwrap_or(&self.principal);
        write!(f, "{} User:{principal} {} {}", self.permission, self.operation, self.resource_type)?;
        if self.resource_type != AclResourceType::Cluster {
            write!(f, " {} {}", self.pattern, self.name)?;
        }
        Ok(())
    }
}

/// Which entries [`Admin::list_acls`](crate::Admin::list_acls) returns:
/// each filter set must match; the default lists every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    /// Entries of this principal (`*`: the entries for every user).
    pub principal: Option<String>,
    /// Entries of this resource type.
    pub resource_type: Option<AclResourceType>,
    /// Entries whose name or prefix is exactly this.
    pub name: Option<String>,
}

impl AclFilter {
    pub(crate) fn to_proto(&self) -> v1::ListAclsRequest {
        v1::ListAclsRequest {
            principal: self.principal.clone().unwrap_or_default(),
            resource_type: self.resource_type.map(|t| t.name().to_owned()).unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_name_the_field_and_the_choices() {
        for op in AclOperation::ALL {
            assert_eq!(op.name().parse::<AclOperation>().unwrap(), *op);
        }
        assert_eq!("READ".parse::<AclOperation>().unwrap(), AclOperation::Read);
        let err = "steal".parse::<AclOperation>().unwrap_err().to_string();
        assert!(err.contains("operation: `steal` is not one of read, write"), "{err}");
        let entry = AclEntry::allow("User:admin", AclResourceType::Cluster, "", AclOperation::Alter).deny();
        assert_eq!(entry.to_string(), "deny User:admin alter cluster");
        let back = AclEntry::from_proto(entry.to_proto()).unwrap();
        assert_eq!(back, entry);
    }
}
