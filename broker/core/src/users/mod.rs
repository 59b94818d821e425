//! Users and their passwords, kept as salted SCRAM credentials (`scram`),
//! never in clear; checking a password (SASL PLAIN, HTTP Basic) or a SCRAM
//! exchange yields the authenticated [`Principal`]. Adapters speak the
//! protocols; this module knows none.

mod scram;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use brooklet_storage::{GroupCommit, StoredUser, UserStore};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

pub use scram::{AuthError, Mechanism};

/// PBKDF2 iterations of new credentials (RFC 7677 asks for at least 4096).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// The longest user name, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 256;
/// The longest password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Who a request comes from, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    name: String,
}

impl Principal {
    /// The principal of the user `name`.
    pub fn user(name: impl Into<String>) -> Principal {
        Principal { name: name.into() }
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "User:{}", self.name)
    }
}

/// A user as listed: its name and the mechanisms it has credentials for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// The user's name.
    pub name: String,
    /// SASL names of the mechanisms, e.g. `SCRAM-SHA-256`.
    pub mechanisms: Vec<String>,
}

/// The users, their credentials, and authentication. Cloning shares them.
#[derive(Clone)]
pub struct Users {
    store: UserStore,
    commit: GroupCommit,
    /// Stand-in credentials for unknown users are derived from it.
    secret: Arc<[u8]>,
    rng: SystemRandom,
    /// Bumped by every change, so that adapters caching a check know when
    /// it is stale.
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

impl Users {
    pub(crate) fn open(store: UserStore, commit: GroupCommit) -> Result<Users> {
        let rng = SystemRandom::new();
        let mut fresh = [0u8; 32];
        rng.fill(&mut fresh).map_err(|_| Error::invalid("server secret", "no system randomness"))?;
        let secret = store.secret_or_insert(&fresh)?;
        Ok(Users { store, commit, secret: secret.into(), rng, generation: Arc::new(AtomicU64::new(0)) })
    }

    /// Adds the user `name` with `password`; on disk when this returns.
    pub async fn add(&self, name: &str, password: &str) -> Result<()> {
        check_name(name)?;
        let user = self.new_user(name, password)?;
        if !self.store.insert_new(&user)? {
            return Err(Error::UserExists { name: name.to_owned() });
        }
        self.changed().await
    }

    /// Replaces the password of `name`; on disk when this returns.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let user = self.new_user(name, password)?;
        if !self.store.replace(&user)? {
            return Err(Error::UserNotFound { name: name.to_owned() });
        }
        self.changed().await
    }

    /// Deletes the user `name`; on disk when this returns.
    pub async fn delete(&self, name: &str) -> Result<()> {
        if !self.store.delete(name)? {
            return Err(Error::UserNotFound { name: name.to_owned() });
        }
        self.changed().await
    }

    /// Every user, by name.
    pub fn list(&self) -> Result<Vec<UserInfo>> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|u| UserInfo {
                name: u.name,
                mechanisms: u.credentials.into_iter().map(|c| c.mechanism).collect(),
            })
            .collect())
    }

    /// True when there is no user.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// A number that changes whenever a user is added, changed or deleted.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Checks a user's password (as SASL PLAIN and HTTP Basic carry it),
    /// in the same time whether or not the user exists. Costs a PBKDF2
    /// derivation: run it off the async workers.
    pub fn authenticate_password(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let lookup = self.lookup(Mechanism::ScramSha256, name);
        let matches = lookup.credential.matches(password.as_bytes());
        if matches && lookup.known { Ok(Principal::user(name)) } else { Err(AuthError::InvalidCredentials) }
    }

    /// The principal of a client whose verified certificate names the user
    /// `name` (the TLS layer checked the certificate): the user must exist.
    pub fn authenticate_certificate(&self, name: &str) -> Result<Principal, AuthError> {
        match self.store.get(name) {
            Ok(Some(_)) => Ok(Principal::user(name)),
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    /// [`Users::authenticate_password`], remembering a success in `cache`
    /// (one per connection) so that the same credentials again cost an
    /// HMAC, not a PBKDF2 derivation, until a user changes.
    pub fn authenticate_password_cached(
        &self,
        cache: &LoginCache,
        name: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        let tag = self.login_tag(name, password);
        let generation = self.generation();
        if let Some((principal, cached_tag, cached_generation)) = cache.last.lock().clone()
            && cached_generation == generation
            && bool::from(cached_tag.ct_eq(&tag))
        {
            return Ok(principal);
        }
        let principal = self.authenticate_password(name, password)?;
        *cache.last.lock() = Some((principal.clone(), tag, generation));
        Ok(principal)
    }

    /// A keyed digest of a name and password: what a cache keeps of them.
    fn login_tag(&self, name: &str, password: &str) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// A SCRAM exchange with `mechanism`.
    pub fn scram(&self, mechanism: Mechanism) -> ScramExchange {
        ScramExchange { users: self.clone(), exchange: scram::Exchange::new(mechanism) }
    }

    /// The user's credential for `mechanism`, or a stand-in derived from
    /// the server secret.
    fn lookup(&self, mechanism: Mechanism, name: &str) -> scram::Lookup {
        let found = self.store.get(name).ok().flatten().and_then(|u| {
            u.credentials.iter().filter_map(scram::Credential::from_stored).find(|c| c.mechanism == mechanism)
        });
        match found {
            Some(credential) => scram::Lookup { credential, known: true },
            None => scram::Lookup {
                credential: scram::Credential::stand_in(mechanism, &self.secret, name, SCRAM_ITERATIONS),
                known: false,
            },
        }
    }

    fn new_user(&self, name: &str, password: &str) -> Result<StoredUser> {
        check_password(password)?;
        let mut credentials = Vec::new();
        for mechanism in Mechanism::ALL {
            let mut salt = [0u8; scram::SALT_LEN];
            self.rng.fill(&mut salt).map_err(|_| Error::invalid("salt", "no system randomness"))?;
            let c = scram::Credential::derive(mechanism, password.as_bytes(), &salt, SCRAM_ITERATIONS);
            credentials.push(c.to_stored());
        }
        Ok(StoredUser { name: name.to_owned(), credentials })
    }

    async fn changed(&self) -> Result<()> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(self.commit.sync().await?)
    }

    fn nonce(&self) -> String {
        let mut bytes = [0u8; 18];
        // Without randomness, the exchange fails at its proof instead.
        let _ = self.rng.fill(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// A connection's last successful password check (see
/// [`Users::authenticate_password_cached`]) and its failed ones.
#[derive(Debug, Default)]
pub struct LoginCache {
    /// Who, a keyed digest of the credentials, and the users' generation.
    /// A lock held only to copy or set the entry.
    last: parking_lot::Mutex<Option<(Principal, Vec<u8>, u64)>>,
    failures: AtomicU64,
}

impl LoginCache {
    /// Counts a failed login; returns how many this connection has had.
    pub fn failed(&self) -> u64 {
        self.failures.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// One SCRAM exchange of a connection: [`ScramExchange::client_first`],
/// then [`ScramExchange::client_final`].
#[derive(Debug)]
pub struct ScramExchange {
    users: Users,
    exchange: scram::Exchange,
}

impl ScramExchange {
    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.exchange.mechanism()
    }

    /// The user the client named, once its first message is read.
    pub fn user(&self) -> Option<&str> {
        self.exchange.user()
    }

    /// The server-first message answering the client-first `message`.
    pub fn client_first(&mut self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        let nonce = self.users.nonce();
        let users = &self.users;
        let mechanism = self.exchange.mechanism();
        self.exchange.client_first(message, &nonce, |name| users.lookup(mechanism, name))
    }

    /// Checks the client-final `message`'s proof: the principal and the
    /// server-final message.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Principal, Vec<u8>), AuthError> {
        let (user, last) = self.exchange.client_final(message)?;
        Ok((Principal::user(user), last))
    }
}

/// A user name: 1 to 256 bytes of letters, digits and `._-@`.
/// Checks a user name: 1 to [`MAX_USER_NAME_BYTES`] bytes of letters,
/// digits and `._-@`.
pub fn check_user_name(name: &str) -> Result<()> {
    check_name(name)
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
        return Err(Error::invalid(
            "user",
            format!("a user name has 1 to {MAX_USER_NAME_BYTES} bytes, `{name}` has {}", name.len()),
        ));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-@".contains(*c))) {
        return Err(Error::invalid(
            "user",
            format!("`{c}` is not allowed in a user name: use letters, digits and `._-@`"),
        ));
    }
    Ok(())
}

/// A password: 1 to 1024 bytes, no control characters.
fn check_password(password: &str) -> Result<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("a password has 1 to {MAX_PASSWORD_BYTES} bytes, this one has {}", password.len()),
        ));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::invalid("password", "a password has no control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Core, CoreConfig};

    async fn core() -> (tempfile::TempDir, Core) {
        let dir = tempfile::tempdir().unwrap();
        let core =
            Core::open(&CoreConfig::new(dir.path()), None, &tokio_util::task::TaskTracker::new()).unwrap();
        (dir, core)
    }

    #[tokio::test]
    async fn users_are_added_checked_changed_and_deleted() {
        let (_dir, core) = core().await;
        let users = core.users();
        assert!(users.is_empty());
        let g0 = users.generation();
        users.add("alice", "s3cret pass").await.unwrap();
        assert!(users.generation() > g0);
        assert!(matches!(users.add("alice", "x").await, Err(Error::UserExists { .. })));
        assert_eq!(
            users.list().unwrap(),
            [UserInfo {
                name: "alice".into(),
                mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()]
            }]
        );
        assert_eq!(users.authenticate_password("alice", "s3cret pass"), Ok(Principal::user("alice")));
        assert_eq!(users.authenticate_password("alice", "wrong"), Err(AuthError::InvalidCredentials));
        assert_eq!(users.authenticate_password("nobody", "s3cret pass"), Err(AuthError::InvalidCredentials));
        let cache = LoginCache::default();
        assert!(users.authenticate_password_cached(&cache, "alice", "s3cret pass").is_ok());
        assert!(users.authenticate_password_cached(&cache, "alice", "s3cret pass").is_ok());
        assert!(users.authenticate_password_cached(&cache, "alice", "other").is_err());
        users.set_password("alice", "new one").await.unwrap();
        assert!(
            users.authenticate_password_cached(&cache, "alice", "s3cret pass").is_err(),
            "a changed password is not served from the cache"
        );
        assert!(users.authenticate_password("alice", "s3cret pass").is_err());
        assert!(users.authenticate_password("alice", "new one").is_ok());
        assert!(matches!(users.set_password("bob", "x").await, Err(Error::UserNotFound { .. })));
        assert_eq!(users.authenticate_certificate("alice"), Ok(Principal::user("alice")));
        assert_eq!(users.authenticate_certificate("Alice"), Err(AuthError::InvalidCredentials));
        users.delete("alice").await.unwrap();
        assert!(matches!(users.delete("alice").await, Err(Error::UserNotFound { .. })));
        assert!(users.authenticate_password("alice", "new one").is_err());
        assert_eq!(users.authenticate_certificate("alice"), Err(AuthError::InvalidCredentials));
    }

    #[tokio::test]
    async fn names_and_passwords_are_checked_naming_the_rule() {
        let (_dir, core) = core().await;
        let users = core.users();
        let err = users.add("a:b", "pw").await.unwrap_err().to_string();
        assert!(err.contains("`:` is not allowed in a user name"), "{err}");
        let err = users.add("", "pw").await.unwrap_err().to_string();
        assert!(err.contains("1 to 256 bytes"), "{err}");
        let err = users.add("a", "").await.unwrap_err().to_string();
        assert!(err.contains("a password has 1 to 1024 bytes"), "{err}");
        let err = users.add("a", "x\ny").await.unwrap_err().to_string();
        assert!(err.contains("no control characters"), "{err}");
    }

    /// A whole exchange as a client makes it, for each mechanism.
    #[tokio::test]
    async fn a_scram_exchange_authenticates_the_user_it_names() {
        let (_dir, core) = core().await;
        let users = core.users();
        users.add("carol", "pencil").await.unwrap();
        for mechanism in Mechanism::ALL {
            for (password, ok) in [("pencil", true), ("pen", false)] {
                let mut x = users.scram(mechanism);
                let first = x.client_first(b"n,,n=carol,r=clientnonce").unwrap();
                let first = String::from_utf8(first).unwrap();
                let final_msg = client_final(mechanism, password, &first);
                let got = x.client_final(final_msg.as_bytes());
                assert_eq!(got.is_ok(), ok, "{mechanism:?} {password}");
                if let Ok((principal, _)) = got {
                    assert_eq!(principal, Principal::user("carol"));
                }
            }
        }
    }

    /// A client's final message for the server-first `first` (RFC 5802).
    fn client_final(m: Mechanism, password: &str, first: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut fields = first.split(',');
        let nonce = &fields.next().unwrap()[2..];
        let salt = b64.decode(&fields.next().unwrap()[2..]).unwrap();
        let i: u32 = fields.next().unwrap()[2..].parse().unwrap();
        let c = scram::Credential::derive(m, password.as_bytes(), &salt, i);
        let (alg, len) = match m {
            Mechanism::ScramSha256 => (ring::pbkdf2::PBKDF2_HMAC_SHA256, 32),
            Mechanism::ScramSha512 => (ring::pbkdf2::PBKDF2_HMAC_SHA512, 64),
        };
        let hmac_alg = match m {
            Mechanism::ScramSha256 => ring::hmac::HMAC_SHA256,
            Mechanism::ScramSha512 => ring::hmac::HMAC_SHA512,
        };
        let mut salted = vec![0; len];
        ring::pbkdf2::derive(
            alg,
            std::num::NonZeroU32::new(i).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = ring::hmac::sign(&ring::hmac::Key::new(hmac_alg, &salted), b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("n=carol,r=clientnonce,{first},{without_proof}");
        let sig = ring::hmac::sign(&ring::hmac::Key::new(hmac_alg, &c.stored_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(sig.as_ref()).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", b64.encode(proof))
    }
}
