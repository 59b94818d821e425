//! SCRAM (RFC 5802, RFC 7677), the server's side: credentials derived from
//! a password, and the exchange that checks a client's proof without the
//! password crossing the wire. No channel binding: the GS2 header is `n,,`
//! (or `y,,`, a client that could bind but sees no server support); an
//! authorization identity other than the user's name is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

use brooklet_storage::StoredCredential;

/// A SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// Every mechanism, as stored for each user.
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha256 => hmac::HMAC_SHA256,
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha256 => &digest::SHA256,
            Mechanism::ScramSha512 => &digest::SHA512,
        }
    }

    /// The length of the hash, and so of every key.
    fn len(self) -> usize {
        self.digest().output_len()
    }
}

/// What a server keeps of a password for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub(crate) mechanism: Mechanism,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u32,
    pub(crate) stored_key: Vec<u8>,
    pub(crate) server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("mechanism", &self.mechanism).finish_non_exhaustive()
    }
}

fn hmac_of(mechanism: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(mechanism.hmac(), key), data).as_ref().to_vec()
}

fn hash(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
    digest::digest(mechanism.digest(), data).as_ref().to_vec()
}

impl Credential {
    /// Derives the credential of `password` (RFC 5802 §3).
    pub(crate) fn derive(mechanism: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Credential {
        let mut salted = vec![0; mechanism.len()];
        let rounds = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(mechanism.pbkdf2(), rounds, salt, password, &mut salted);
        let client_key = hmac_of(mechanism, &salted, b"Client Key");
        Credential {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash(mechanism, &client_key),
            server_key: hmac_of(mechanism, &salted, b"Server Key"),
        }
    }

    /// Whether `password` is this credential's, in time independent of
    /// where the keys differ.
    pub(crate) fn matches(&self, password: &[u8]) -> bool {
        let derived = Credential::derive(self.mechanism, password, &self.salt, self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }

    pub(crate) fn to_stored(&self) -> StoredCredential {
        StoredCredential {
            mechanism: self.mechanism.name().to_owned(),
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }

    pub(crate) fn from_stored(stored: &StoredCredential) -> Option<Credential> {
        let mechanism = Mechanism::from_name(&stored.mechanism)?;
        Some(Credential {
            mechanism,
            salt: stored.salt.clone(),
            iterations: stored.iterations,
            stored_key: stored.stored_key.clone(),
            server_key: stored.server_key.clone(),
        })
    }

    /// A credential for a user that does not exist, the same for the same
    /// name each time, that no password matches in practice: a failed
    /// exchange with it looks and takes the same as one with a real user.
    pub(crate) fn stand_in(mechanism: Mechanism, secret: &[u8], user: &str, iterations: u32) -> Credential {
        let derive = |what: &str| {
            let mut data = Vec::with_capacity(what.len() + mechanism.name().len() + user.len() + 2);
            for part in [what, mechanism.name(), user] {
                data.extend_from_slice(part.as_bytes());
                data.push(0);
            }
            hmac_of(mechanism, secret, &data)
        };
        let mut salt = derive("salt");
        salt.truncate(SALT_LEN);
        Credential { mechanism, salt, iterations, stored_key: derive("stored"), server_key: derive("server") }
    }
}

/// Bytes of a new salt.
pub(crate) const SALT_LEN: usize = 16;

/// Why an exchange failed. A client is told only that authentication
/// failed; the reason goes to the log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The client's message breaks the mechanism's grammar or rules.
    #[error("malformed {mechanism} message: {reason}")]
    Malformed {
        /// The mechanism.
        mechanism: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The user does not exist or the password or proof is wrong (which of
    /// the two is not told).
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// The longest client message accepted.
const MAX_MESSAGE: usize = 4096;

/// One SCRAM exchange on the server: the client's first message in, the
/// server's first out; the client's final in, the server's final out.
pub(crate) struct Exchange {
    mechanism: Mechanism,
    state: State,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").field("mechanism", &self.mechanism).finish_non_exhaustive()
    }
}

enum State {
    Initial,
    SentFirst(Box<Sent>),
    Done,
}

/// What the server keeps between its first message and the client's final.
struct Sent {
    user: String,
    known: bool,
    credential: Credential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// What the server looks up for a client-first message.
pub(crate) struct Lookup {
    /// The user's credential, or a stand-in for an unknown user.
    pub(crate) credential: Credential,
    /// Whether the user exists.
    pub(crate) known: bool,
}

impl Exchange {
    pub(crate) fn new(mechanism: Mechanism) -> Exchange {
        Exchange { mechanism, state: State::Initial }
    }

    pub(crate) fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user named in the client's first message, once read.
    pub(crate) fn user(&self) -> Option<&str> {
        match &self.state {
            State::SentFirst(sent) => Some(&sent.user),
            _ => None,
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> AuthError {
        AuthError::Malformed { mechanism: self.mechanism.name(), reason: reason.into() }
    }

    /// Reads the client-first message; `lookup` finds the user's
    /// credential; `server_nonce` is appended to the client's nonce.
    /// Returns the server-first message.
    pub(crate) fn client_first(
        &mut self,
        message: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Lookup,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Initial) {
            return Err(self.malformed("a first message after the exchange began"));
        }
        self.state = State::Done;
        let text = self.text(message)?;
        // gs2-header: cbind flag, authzid, then the bare message.
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(raw_authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(self.malformed("expected a GS2 header `n,,` before the message"));
        };
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(self.malformed("channel binding is not supported: use the GS2 header `n,,`"));
            }
            f => return Err(self.malformed(format!("unknown channel-binding flag `{f}`"))),
        }
        let authzid = match raw_authzid {
            "" => None,
            a => Some(
                decode_name(a.strip_prefix("a=").ok_or_else(|| self.malformed("authzid must start `a=`"))?)
                    .ok_or_else(|| self.malformed("authzid has a bad `=` escape"))?,
            ),
        };
        let mut attrs = bare.split(',');
        let name = match attrs.next() {
            Some(n) if n.starts_with("m=") => {
                return Err(self.malformed("mandatory extensions are not supported"));
            }
            Some(n) => n.strip_prefix("n=").ok_or_else(|| self.malformed("expected `n=` (the user name)"))?,
            None => return Err(self.malformed("expected `n=` (the user name)")),
        };
        let user = decode_name(name).ok_or_else(|| self.malformed("user name has a bad `=` escape"))?;
        if user.is_empty() {
            return Err(self.malformed("empty user name"));
        }
        if authzid.as_ref().is_some_and(|a| *a != user) {
            return Err(self.malformed("an authorization identity other than the user is not supported"));
        }
        let client_nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(|| self.malformed("expected `r=` (the client nonce) after the user name"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
            return Err(self.malformed("the client nonce must be printable ASCII other than `,`"));
        }
        let Lookup { credential, known } = lookup(&user);
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first =
            format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
        let gs2_header = format!("{flag},{raw_authzid},");
        self.state = State::SentFirst(Box::new(Sent {
            user,
            known,
            credential,
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        }));
        Ok(server_first.into_bytes())
    }

    /// Reads the client-final message and checks its proof. Returns the
    /// user's name and the server-final message.
    pub(crate) fn client_final(&mut self, message: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
        let State::SentFirst(sent) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(self.malformed("a final message before the first"));
        };
        let Sent { user, known, credential, gs2_header, client_first_bare, server_first, nonce } = *sent;
        let text = self.text(message)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| self.malformed("expected the proof `p=` last in the final message"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(|| self.malformed("expected `c=` (the channel binding) first"))?;
        if B64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(self.malformed("the channel binding `c=` does not repeat the GS2 header"));
        }
        let got_nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(|| self.malformed("expected `r=` (the nonce) after `c=`"))?;
        if got_nonce != nonce {
            return Err(self.malformed("the nonce is not the one the server sent"));
        }
        let proof = B64.decode(proof).map_err(|_| self.malformed("the proof is not base64"))?;
        if proof.len() != self.mechanism.len() {
            return Err(self.malformed(format!(
                "the proof has {} bytes, {} expected",
                proof.len(),
                self.mechanism.len()
            )));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_of(self.mechanism, &credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let proof_ok = hash(self.mechanism, &client_key).ct_eq(&credential.stored_key);
        // Both checks are made whether or not the user exists.
        if !bool::from(proof_ok & subtle::Choice::from(u8::from(known))) {
            return Err(AuthError::InvalidCredentials);
        }
        let server_signature = hmac_of(self.mechanism, &credential.server_key, auth_message.as_bytes());
        Ok((user, format!("v={}", B64.encode(server_signature)).into_bytes()))
    }

    fn text<'a>(&self, message: &'a [u8]) -> Result<&'a str, AuthError> {
        if message.len() > MAX_MESSAGE {
            return Err(self.malformed(format!("{} bytes exceeds the limit of {MAX_MESSAGE}", message.len())));
        }
        std::str::from_utf8(message).map_err(|_| self.malformed("not UTF-8"))
    }
}

/// A `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_proof(m: Mechanism, password: &[u8], salt: &[u8], i: u32, auth_message: &str) -> String {
        let c = Credential::derive(m, password, salt, i);
        let mut salted = vec![0; m.len()];
        pbkdf2::derive(m.pbkdf2(), std::num::NonZeroU32::new(i).unwrap(), salt, password, &mut salted);
        let client_key = hmac_of(m, &salted, b"Client Key");
        let signature = hmac_of(m, &c.stored_key, auth_message.as_bytes());
        B64.encode(client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect::<Vec<u8>>())
    }

    /// RFC 7677 §3: the SCRAM-SHA-256 example, byte for byte.
    #[test]
    fn the_rfc_7677_exchange_is_reproduced() {
        let m = Mechanism::ScramSha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = Credential::derive(m, b"pencil", &salt, 4096);
        let mut x = Exchange::new(m);
        let first = x
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", |user| {
                assert_eq!(user, "user");
                Lookup { credential: credential.clone(), known: true }
            })
            .unwrap();
        assert_eq!(
            String::from_utf8(first).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, last) = x
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(String::from_utf8(last).unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    /// RFC 5802 §5's exchange has the same shape (its hash is SHA-1, which
    /// is not offered): a SHA-512 exchange of that shape succeeds, and the
    /// server's signature is what a client expects.
    #[test]
    fn an_exchange_of_the_rfc_5802_shape_succeeds_with_sha_512() {
        let m = Mechanism::ScramSha512;
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let credential = Credential::derive(m, b"pencil", &salt, 4096);
        let mut x = Exchange::new(m);
        let first = x
            .client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j", |_| Lookup {
                credential: credential.clone(),
                known: true,
            })
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        assert_eq!(first, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
        let without_proof = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let auth = format!("n=user,r=fyko+d2lbbFgONRv9qkxdawL,{first},{without_proof}");
        let proof = client_proof(m, b"pencil", &salt, 4096, &auth);
        let (_, last) = x.client_final(format!("{without_proof},p={proof}").as_bytes()).unwrap();
        let expected = hmac_of(m, &credential.server_key, auth.as_bytes());
        assert_eq!(String::from_utf8(last).unwrap(), format!("v={}", B64.encode(expected)));
    }

    #[test]
    fn a_wrong_proof_an_unknown_user_and_a_wrong_nonce_fail() {
        let m = Mechanism::ScramSha256;
        let salt = [3u8; 16];
        let credential = Credential::derive(m, b"right", &salt, 4096);
        let run = |password: &[u8], known: bool, nonce_suffix: &str| {
            let mut x = Exchange::new(m);
            let first = x
                .client_first(b"n,,n=u,r=abc", "def", |_| Lookup { credential: credential.clone(), known })
                .unwrap();
            let first = String::from_utf8(first).unwrap();
            let without_proof = format!("c=biws,r=abcdef{nonce_suffix}");
            let auth = format!("n=u,r=abc,{first},{without_proof}");
            let proof = client_proof(m, password, &salt, 4096, &auth);
            x.client_final(format!("{without_proof},p={proof}").as_bytes())
        };
        assert!(run(b"right", true, "").is_ok());
        assert_eq!(run(b"wrong", true, ""), Err(AuthError::InvalidCredentials));
        assert_eq!(run(b"right", false, ""), Err(AuthError::InvalidCredentials), "a stand-in never passes");
        assert!(matches!(run(b"right", true, "x"), Err(AuthError::Malformed { .. })));
    }

    #[test]
    fn malformed_first_messages_are_refused_by_what_is_wrong() {
        let c = Credential::derive(Mechanism::ScramSha256, b"p", &[1; 16], 4096);
        let first = |msg: &[u8]| {
            let mut x = Exchange::new(Mechanism::ScramSha256);
            x.client_first(msg, "s", |_| Lookup { credential: c.clone(), known: true }).map(|_| ())
        };
        let reason = |msg: &[u8]| match first(msg) {
            Err(AuthError::Malformed { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(b"p=tls-unique,,n=u,r=x").contains("channel binding is not supported"));
        assert!(reason(b"n,,n=u").contains("`r=`"));
        assert!(reason(b"n,,m=x,n=u,r=x").contains("mandatory extensions"));
        assert!(reason(b"n,,n=u=2,r=x").contains("bad `=` escape"));
        assert!(reason(b"n,a=other,n=u,r=x").contains("authorization identity"));
        assert!(reason(b"n,,n=u,r=a\x01b").contains("printable"));
        assert!(reason(&vec![b'a'; 5000]).contains("exceeds the limit"));
        assert!(first(b"n,a=u,n=u,r=x").is_ok());
        assert!(first(b"y,,n=a=2Cb=3D,r=x").is_ok());
        assert_eq!(decode_name("a=2Cb=3D").as_deref(), Some("a,b="));
    }

    #[test]
    fn a_stand_in_credential_is_stable_per_user_and_secret() {
        let m = Mechanism::ScramSha512;
        let a = Credential::stand_in(m, b"secret", "ghost", 4096);
        assert_eq!(a, Credential::stand_in(m, b"secret", "ghost", 4096));
        assert_ne!(a.salt, Credential::stand_in(m, b"secret", "ghost2", 4096).salt);
        assert_ne!(a.salt, Credential::stand_in(m, b"other", "ghost", 4096).salt);
        assert_eq!((a.salt.len(), a.stored_key.len()), (SALT_LEN, 64));
    }
}
