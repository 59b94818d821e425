//! Users as stored: per user name, its salted SCRAM credentials (never a
//! password), and the secret the core derives stand-in credentials from.
//! It stores and reads; the core derives, checks and decides.

use prost::Message;

use crate::error::{StorageError, sled_err};

/// One mechanism's salted credential (RFC 5802): what a server keeps to
/// check a proof without knowing the password.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StoredCredential {
    /// The mechanism's name, e.g. `SCRAM-SHA-256`.
    #[prost(string, tag = "1")]
    pub mechanism: String,
    /// The salt.
    #[prost(bytes = "vec", tag = "2")]
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    #[prost(uint32, tag = "3")]
    pub iterations: u32,
    /// H(ClientKey).
    #[prost(bytes = "vec", tag = "4")]
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    #[prost(bytes = "vec", tag = "5")]
    pub server_key: Vec<u8>,
}

/// A user as stored.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StoredUser {
    /// The user's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// One credential per mechanism.
    #[prost(message, repeated, tag = "2")]
    pub credentials: Vec<StoredCredential>,
}

/// The `users` tree (by name) and the `auth` tree (the server secret).
/// Writes are in the engine when they return; the caller syncs them.
#[derive(Clone, Debug)]
pub struct UserStore {
    pub(crate) users: sled::Tree,
    pub(crate) auth: sled::Tree,
}

/// The `auth` tree's key of the server secret.
const SECRET_KEY: &[u8] = b"server_secret";

impl UserStore {
    /// The user named `name`, if stored.
    pub fn get(&self, name: &str) -> Result<Option<StoredUser>, StorageError> {
        let Some(value) = self.users.get(name.as_bytes()).map_err(sled_err("read users"))? else {
            return Ok(None);
        };
        let user =
            StoredUser::decode(&*value).map_err(|source| StorageError::Metadata { what: "user", source })?;
        Ok(Some(user))
    }

    /// Stores `user` if no user of its name exists; false if one does.
    pub fn insert_new(&self, user: &StoredUser) -> Result<bool, StorageError> {
        let swapped = self
            .users
            .compare_and_swap(user.name.as_bytes(), None::<&[u8]>, Some(user.encode_to_vec()))
            .map_err(sled_err("write users"))?;
        Ok(swapped.is_ok())
    }

    /// Replaces a stored user; false if it does not exist (then nothing is
    /// written).
    pub fn replace(&self, user: &StoredUser) -> Result<bool, StorageError> {
        let mut current = self.users.get(user.name.as_bytes()).map_err(sled_err("read users"))?;
        // A delete or another replace in between is seen, not overwritten.
        while let Some(old) = current {
            match self
                .users
                .compare_and_swap(user.name.as_bytes(), Some(old), Some(user.encode_to_vec()))
                .map_err(sled_err("write users"))?
            {
                Ok(()) => return Ok(true),
                Err(e) => current = e.current,
            }
        }
        Ok(false)
    }

    /// Deletes the user named `name`; false if it did not exist.
    pub fn delete(&self, name: &str) -> Result<bool, StorageError> {
        Ok(self.users.remove(name.as_bytes()).map_err(sled_err("delete user"))?.is_some())
    }

    /// Every stored user, by name.
    pub fn list(&self) -> Result<Vec<StoredUser>, StorageError> {
        self.users
            .iter()
            .values()
            .map(|value| {
                let value = value.map_err(sled_err("read users"))?;
                StoredUser::decode(&*value).map_err(|source| StorageError::Metadata { what: "user", source })
            })
            .collect()
    }

    /// True when no user is stored.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The server secret: the one stored, or else `new`, stored now.
    pub fn secret_or_insert(&self, new: &[u8]) -> Result<Vec<u8>, StorageError> {
        match self
            .auth
            .compare_and_swap(SECRET_KEY, None::<&[u8]>, Some(new))
            .map_err(sled_err("write the server secret"))?
        {
            Ok(()) => Ok(new.to_vec()),
            Err(e) => Ok(e.current.map(|v| v.to_vec()).unwrap_or_else(|| new.to_vec())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, UserStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let store = UserStore { users: db.open_tree("users").unwrap(), auth: db.open_tree("auth").unwrap() };
        (dir, store)
    }

    fn user(name: &str, salt: u8) -> StoredUser {
        StoredUser {
            name: name.into(),
            credentials: vec![StoredCredential {
                mechanism: "SCRAM-SHA-256".into(),
                salt: vec![salt; 16],
                iterations: 4096,
                stored_key: vec![1; 32],
                server_key: vec![2; 32],
            }],
        }
    }

    #[test]
    fn users_are_added_once_replaced_listed_and_deleted() {
        let (_dir, s) = store();
        assert!(s.is_empty());
        assert!(s.insert_new(&user("alice", 1)).unwrap());
        assert!(!s.insert_new(&user("alice", 2)).unwrap(), "a second add of a name is refused");
        assert_eq!(s.get("alice").unwrap(), Some(user("alice", 1)));
        assert!(s.replace(&user("alice", 3)).unwrap());
        assert_eq!(s.get("alice").unwrap(), Some(user("alice", 3)));
        assert!(!s.replace(&user("bob", 3)).unwrap(), "no replace of a missing user");
        assert_eq!(s.get("bob").unwrap(), None);
        assert!(s.insert_new(&user("bob", 4)).unwrap());
        let names: Vec<_> = s.list().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(s.delete("alice").unwrap());
        assert!(!s.delete("alice").unwrap());
    }

    #[test]
    fn the_server_secret_is_kept_once_stored() {
        let (_dir, s) = store();
        assert_eq!(s.secret_or_insert(&[7; 32]).unwrap(), vec![7; 32]);
        assert_eq!(s.secret_or_insert(&[9; 32]).unwrap(), vec![7; 32]);
    }
}
