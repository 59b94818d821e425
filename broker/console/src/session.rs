//! Console sessions: a random token in an HttpOnly, SameSite=Strict cookie,
//! the user it logged in as (with `--auth required`), and its CSRF token,
//! which every POST but the login repeats in `x-csrf-token`. Held in
//! memory only: a restart logs everyone out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use brooklet_core::Principal;
use parking_lot::Mutex;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "brooklet_console";

/// A session unused this long is forgotten.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// Sessions held at most; past it the least recently used is dropped.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// One browser's session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// Who logged in; `None` before a login (or without authentication).
    pub(crate) principal: Option<Principal>,
    /// The token its POSTs must carry.
    pub(crate) csrf: String,
    /// Its cookie value.
    pub(crate) token: String,
    used: Instant,
}

/// Every live session, by token. A lock, not an actor: each use is a map
/// lookup, never held across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
}

/// A random token: two v4 UUIDs, 244 bits from the OS's generator.
fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Sessions {
    /// The session whose cookie `headers` carry, if it is live; its last use
    /// is now.
    pub(crate) fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let token = cookie(headers)?;
        let mut sessions = self.by_token.lock();
        let now = Instant::now();
        let s = sessions.get_mut(token)?;
        if now.duration_since(s.used) > IDLE_TIMEOUT {
            sessions.remove(token);
            return None;
        }
        s.used = now;
        Some(s.clone())
    }

    /// A new session for `principal`.
    pub(crate) fn create(&self, principal: Option<Principal>) -> Session {
        let session =
            Session { principal, csrf: random_token(), token: random_token(), used: Instant::now() };
        let mut sessions = self.by_token.lock();
        if sessions.len() >= MAX_SESSIONS {
            let now = Instant::now();
            sessions.retain(|_, s| now.duration_since(s.used) <= IDLE_TIMEOUT);
            if sessions.len() >= MAX_SESSIONS
                && let Some(oldest) = sessions.values().min_by_key(|s| s.used).map(|s| s.token.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(session.token.clone(), session.clone());
        session
    }

    /// Ends the session of `token`.
    pub(crate) fn remove(&self, token: &str) {
        self.by_token.lock().remove(token);
    }
}

/// The value of `Set-Cookie` for `session` (scoped to the console).
pub(crate) fn set_cookie(session: &Session) -> String {
    format!("{COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict", session.token)
}

/// The value of `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session token in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Compares two tokens in time independent of where they differ.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
