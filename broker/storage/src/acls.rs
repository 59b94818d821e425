//! Access-control entries as stored, in the `acls` tree: each entry's
//! canonical form is its key, so an entry is stored at most once. It stores
//! and reads; the core parses, checks and decides.

use prost::Message;

use crate::error::{StorageError, sled_err};

/// One access-control entry, in the core's words (see `brooklet-core`'s
/// `acl` module for what each field may hold).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct StoredAcl {
    /// A user name, or `*` for every authenticated user.
    #[prost(string, tag = "1")]
    pub principal: String,
    /// `topic`, `group` or `cluster`.
    #[prost(string, tag = "2")]
    pub resource_type: String,
    /// `literal` or `prefixed`.
    #[prost(string, tag = "3")]
    pub pattern: String,
    /// The resource's name, its prefix, or `*` (every name).
    #[prost(string, tag = "4")]
    pub name: String,
    /// `read`, `write`, `create`, `delete`, `describe`, `alter` or `all`.
    #[prost(string, tag = "5")]
    pub operation: String,
    /// `allow` or `deny`.
    #[prost(string, tag = "6")]
    pub permission: String,
}

impl StoredAcl {
    /// The entry's key: its fields, each with its length, so that no two
    /// entries share one.
    fn key(&self) -> Vec<u8> {
        let mut key = Vec::new();
        for field in [
            &self.principal,
            &self.resource_type,
            &self.pattern,
            &self.name,
            &self.operation,
            &self.permission,
        ] {
            key.extend_from_slice(&(field.len() as u32).to_be_bytes());
            key.extend_from_slice(field.as_bytes());
        }
        key
    }
}

/// The `acls` tree. Writes are in the engine when they return; the caller
/// syncs them.
#[derive(Clone, Debug)]
pub struct AclStore {
    pub(crate) acls: sled::Tree,
}

impl AclStore {
    /// Stores `acl`; false if it was stored already (then nothing is
    /// written).
    pub fn insert(&self, acl: &StoredAcl) -> Result<bool, StorageError> {
        let swapped = self
            .acls
            .compare_and_swap(acl.key(), None::<&[u8]>, Some(acl.encode_to_vec()))
            .map_err(sled_err("write acls"))?;
        Ok(swapped.is_ok())
    }

    /// Removes `acl`; false if it was not stored.
    pub fn remove(&self, acl: &StoredAcl) -> Result<bool, StorageError> {
        Ok(self.acls.remove(acl.key()).map_err(sled_err("delete acl"))?.is_some())
    }

    /// Every stored entry, in key order.
    pub fn list(&self) -> Result<Vec<StoredAcl>, StorageError> {
        self.acls
            .iter()
            .values()
            .map(|value| {
                let value = value.map_err(sled_err("read acls"))?;
                StoredAcl::decode(&*value).map_err(|source| StorageError::Metadata { what: "acl", source })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(principal: &str, name: &str) -> StoredAcl {
        StoredAcl {
            principal: principal.into(),
            resource_type: "topic".into(),
            pattern: "literal".into(),
            name: name.into(),
            operation: "read".into(),
            permission: "allow".into(),
        }
    }

    #[test]
    fn entries_are_stored_once_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
        let store = AclStore { acls: db.open_tree("acls").unwrap() };
        assert!(store.insert(&acl("alice", "orders")).unwrap());
        assert!(!store.insert(&acl("alice", "orders")).unwrap(), "stored once");
        // Fields are delimited: these two differ.
        assert!(store.insert(&acl("alice", "ordersx")).unwrap());
        assert!(store.insert(&acl("alicex", "orders")).unwrap());
        assert_eq!(store.list().unwrap().len(), 3);
        assert!(store.remove(&acl("alice", "orders")).unwrap());
        assert!(!store.remove(&acl("alice", "orders")).unwrap());
        assert_eq!(store.list().unwrap(), vec![acl("alice", "ordersx"), acl("alicex", "orders")]);
    }
}
