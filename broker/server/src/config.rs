//! A broker's configuration: the core's settings and those of the listeners
//! around it. The binary parses flags, environment and file into it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use brooklet_core::{CoreConfig, Result};
use brooklet_tls::guard::ConnSettings;
use brooklet_tls::{ClientAuth, PrincipalFrom, Tls};

/// How a broker runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The core's settings: data directory, limits, cache, groups,
    /// durability, retention and group commit.
    pub core: CoreConfig,
    /// Requests slower than this are logged as warnings (default 1 s;
    /// long-poll fetches excepted).
    pub slow_request: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` over HTTP; `None`
    /// serves none. [`Config::new`] leaves it `None`, so that brokers in
    /// parallel tests never compete for a port; `brooklet serve` defaults to
    /// 127.0.0.1:7071.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the web console at `/console/` on the metrics listener
    /// (default `true`; `--console off`). Without [`Auth::Required`] it
    /// stays on loopback unless [`Config::allow_insecure`].
    pub console: bool,
    /// Where to serve Kafka's wire protocol; `None` (the default) serves
    /// none. [`crate::EmbeddedBroker`] binds it itself (use `127.0.0.1:0`).
    pub kafka_listen: Option<SocketAddr>,
    /// The `host:port` Kafka's Metadata hands out as this broker's; `None`
    /// advertises the Kafka listener's bound address.
    pub kafka_advertised: Option<(String, u16)>,
    /// Kafka's Metadata creates the topics it is asked about (if the
    /// request allows), with [`Config::kafka_default_partitions`].
    pub kafka_auto_create_topics: bool,
    /// Partitions of a topic created by Kafka's Metadata.
    pub kafka_default_partitions: u32,
    /// TLS on the gRPC and Kafka listeners (the metrics listener stays
    /// plaintext); `None` (the default) serves plaintext. Loaded and checked
    /// by [`Tls::new`]; [`Tls::reload`] on a clone swaps the certificate
    /// while the broker runs.
    pub tls: Option<Tls>,
    /// Whether clients must authenticate (default [`Auth::None`]).
    pub auth: Auth,
    /// Which name of a verified client certificate is its user, when both
    /// client certificates (`ClientAuth::Required`) and [`Auth::Required`]
    /// are: such a connection is authenticated by its certificate.
    pub tls_principal_from: PrincipalFrom,
    /// Serve the gRPC or Kafka listener on a non-loopback address without
    /// TLS and [`Auth::Required`] (default `false`: refused at start).
    pub allow_insecure: bool,
    /// A user created at start when no user exists yet (the first
    /// administrator); logged when it is.
    pub bootstrap_user: Option<BootstrapUser>,
    /// Users allowed everything, whatever the ACLs say (with
    /// [`Auth::Required`]; without it everything is allowed anyway).
    pub superusers: Vec<String>,
    /// What each connection of the gRPC and Kafka listeners is allowed:
    /// connections per client address (`--max-connections-per-ip`), the
    /// deadline for its handshake and first request
    /// (`--handshake-timeout-ms`), and its idle time
    /// (`--connections-max-idle-ms`).
    pub connections: ConnSettings,
}

/// Whether clients authenticate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Every client is served without credentials.
    #[default]
    None,
    /// gRPC requests carry `authorization: Basic …` of a user; Kafka
    /// connections authenticate with SASL (PLAIN, SCRAM-SHA-256/512) first.
    Required,
}

/// The first user, created at start if no user exists.
#[derive(Clone)]
pub struct BootstrapUser {
    /// The user's name.
    pub name: String,
    /// The password (kept only until the user is stored).
    pub password: String,
}

impl std::fmt::Debug for BootstrapUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapUser").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration with default limits storing its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            core: CoreConfig::new(data_dir),
            slow_request: Duration::from_secs(1),
            metrics_listen: None,
            console: true,
            kafka_listen: None,
            kafka_advertised: None,
            kafka_auto_create_topics: true,
            kafka_default_partitions: 1,
            auth: Auth::None,
            tls_principal_from: PrincipalFrom::default(),
            allow_insecure: false,
            bootstrap_user: None,
            superusers: Vec::new(),
            tls: None,
            connections: ConnSettings::default(),
        }
    }

    /// Checks every value against its accepted range.
    pub fn validate(&self) -> Result<()> {
        self.core.validate()?;
        for user in &self.superusers {
            brooklet_core::check_user_name(user).map_err(|e| match e {
                brooklet_core::Error::InvalidArgument { reason, .. } => {
                    brooklet_core::Error::invalid("superusers", reason)
                }
                other => other,
            })?;
        }
        let c = &self.connections;
        if c.max_per_address == 0 {
            return Err(brooklet_core::Error::invalid("max_connections_per_ip", "must be at least 1"));
        }
        if c.handshake_timeout.is_zero() {
            return Err(brooklet_core::Error::invalid("handshake_timeout_ms", "must be at least 1"));
        }
        if c.idle_timeout.is_zero() {
            return Err(brooklet_core::Error::invalid("connections_max_idle_ms", "must be at least 1"));
        }
        let max = self.core.limits.max_partitions;
        if !(1..=max).contains(&self.kafka_default_partitions) {
            return Err(brooklet_core::Error::invalid(
                "kafka_default_partitions",
                format!("{} is not in 1..={max} (--max-partitions)", self.kafka_default_partitions),
            ));
        }
        if let Some((host, _)) = &self.kafka_advertised
            && (host.is_empty() || host.eq_ignore_ascii_case("localhost"))
        {
            return Err(brooklet_core::Error::invalid(
                "kafka_advertised",
                format!("`{host}` is not an address clients can rely on: advertise an IP such as 127.0.0.1"),
            ));
        }
        match (&self.kafka_advertised, self.kafka_listen) {
            (Some((host, port)), _) => {
                if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
                    return Err(brooklet_core::Error::invalid(
                        "kafka_advertised",
                        format!(
                            "`{host}:{port}` is not an address clients can connect to: advertise the \
                             broker's IP or host name"
                        ),
                    ));
                }
                self.kafka_listen.map_or(Ok(()), |listen| self.check_exposure("kafka_listen", listen))
            }
            // Both refusals of a Kafka listener on every interface at once,
            // not one per attempt to start.
            (None, Some(listen)) => {
                all_of([check_kafka_bound(listen), self.check_exposure("kafka_listen", listen)])
            }
            (None, None) => Ok(()),
        }
    }

    /// [`validate`](Self::validate), and the gRPC listener's address
    /// `listen` by [`check_exposure`](Self::check_exposure): what `brooklet
    /// serve` checks before it binds, with every refusal of the listeners
    /// in the one error.
    pub fn check_start(&self, listen: SocketAddr) -> Result<()> {
        all_of([self.validate(), self.check_exposure("listen", listen)])
    }

    /// Refuses to serve the listener `key` (`listen`, `kafka_listen`) on
    /// `addr` when that is not a loopback address (`0.0.0.0` and `::`
    /// included) and clients would be served without TLS or without
    /// authentication, unless [`Config::allow_insecure`] says so.
    pub fn check_exposure(&self, key: &str, addr: SocketAddr) -> Result<()> {
        exposure(key, addr, self.tls.is_some(), self.auth == Auth::Required, self.allow_insecure)
    }

    /// Refuses the console on the metrics listener's `addr` when that is
    /// not a loopback address and users would not log in (no
    /// [`Auth::Required`]), unless [`Config::allow_insecure`] says so. The
    /// listener has no TLS, so only authentication is asked for.
    pub fn check_console_exposure(&self, addr: SocketAddr) -> Result<()> {
        if !self.console
            || addr.ip().to_canonical().is_loopback()
            || self.auth == Auth::Required
            || self.allow_insecure
        {
            return Ok(());
        }
        Err(brooklet_core::Error::invalid(
            "metrics_listen",
            format!(
                "--metrics-listen {addr} is reachable from other hosts and serves the console, but the broker \
                 has no --auth required: add it, bind a loopback address, pass --console off, or pass \
                 --allow-insecure"
            ),
        ))
    }

    /// How a verified client certificate authenticates its connection:
    /// `Some` when both client certificates and authentication are required.
    pub fn certificate_principal(&self) -> Option<PrincipalFrom> {
        let certificates = self.tls.as_ref().is_some_and(|t| t.config().client_auth == ClientAuth::Required);
        (certificates && self.auth == Auth::Required).then_some(self.tls_principal_from)
    }
}

/// The refusals among `checks` as one: their settings joined with `, `,
/// their reasons with `; `. An error other than a refused setting is
/// returned as it is.
fn all_of<const N: usize>(checks: [Result<()>; N]) -> Result<()> {
    let (mut fields, mut reasons) = (Vec::new(), Vec::new());
    for check in checks {
        match check {
            Ok(()) => {}
            Err(brooklet_core::Error::InvalidArgument { field, reason }) => {
                if !fields.contains(&field) {
                    fields.push(field);
                }
                reasons.push(reason);
            }
            Err(other) => return Err(other),
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(brooklet_core::Error::invalid(fields.join(", "), reasons.join("; ")))
}

/// The rule of [`Config::check_exposure`].
fn exposure(key: &str, addr: SocketAddr, tls: bool, auth: bool, allow_insecure: bool) -> Result<()> {
    if addr.ip().to_canonical().is_loopback() || (tls && auth) || allow_insecure {
        return Ok(());
    }
    let (missing, them) = match (tls, auth) {
        (false, false) => ("TLS (--tls-cert, --tls-key) and --auth required", "them"),
        (false, true) => ("TLS (--tls-cert, --tls-key)", "it"),
        _ => ("--auth required", "it"),
    };
    let flag = format!("--{}", key.replace('_', "-"));
    Err(brooklet_core::Error::invalid(
        key,
        format!(
            "{flag} {addr} is reachable from other hosts, but the broker has no {missing}: add {them}, \
             bind a loopback address, or pass --allow-insecure"
        ),
    ))
}

/// Refuses a Kafka listener on `bound`, an unspecified address (`0.0.0.0`,
/// `::`), when no address is advertised: clients would be told to connect
/// to it.
pub(crate) fn check_kafka_bound(bound: SocketAddr) -> Result<()> {
    if !bound.ip().is_unspecified() {
        return Ok(());
    }
    Err(brooklet_core::Error::invalid(
        "kafka_advertised",
        format!(
            "--kafka-listen {bound} binds every interface; set --kafka-advertised HOST:PORT to the \
             address clients connect to"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(listen: &str, advertised: Option<(&str, u16)>) -> Config {
        let mut config = Config::new("unused");
        config.kafka_listen = Some(listen.parse().unwrap());
        config.kafka_advertised = advertised.map(|(h, p)| (h.to_owned(), p));
        // Off loopback without TLS: allowed here, see the safe-defaults test.
        config.allow_insecure = true;
        config
    }

    #[test]
    fn an_unspecified_address_is_never_advertised_to_kafka_clients() {
        for listen in ["0.0.0.0:9092", "[::]:9092"] {
            let err = kafka(listen, None).validate().unwrap_err().to_string();
            assert!(err.contains(&format!("--kafka-listen {listen} binds every interface")), "{err}");
            assert!(err.contains("set --kafka-advertised HOST:PORT"), "{err}");
            kafka(listen, Some(("10.1.2.3", 9092))).validate().expect("advertised explicitly");
            kafka(listen, Some(("broker.example", 9092))).validate().expect("a host name");
        }
        for host in ["0.0.0.0", "::"] {
            let err = kafka("127.0.0.1:9092", Some((host, 9092))).validate().unwrap_err().to_string();
            assert!(err.contains("kafka_advertised") && err.contains("not an address clients"), "{err}");
        }
        kafka("127.0.0.1:9092", None).validate().expect("a specific address is advertised as bound");
    }

    #[test]
    fn a_kafka_listener_on_every_interface_is_refused_for_all_its_reasons_at_once() {
        let mut config = kafka("0.0.0.0:9092", None);
        config.allow_insecure = false;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("invalid kafka_advertised, kafka_listen: "), "{err}");
        assert!(err.contains("set --kafka-advertised HOST:PORT"), "{err}");
        assert!(err.contains("; --kafka-listen 0.0.0.0:9092 is reachable from other hosts"), "{err}");
        // With the gRPC listener's refusal too.
        let err = config.check_start("0.0.0.0:7070".parse().unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("--kafka-advertised") && err.contains("; --listen 0.0.0.0:7070 is reachable"),
            "{err}"
        );
        config.check_start("127.0.0.1:7070".parse().unwrap()).unwrap_err();
        config.allow_insecure = true;
        config.kafka_advertised = Some(("10.1.2.3".to_owned(), 9092));
        config.check_start("0.0.0.0:7070".parse().unwrap()).expect("allowed and advertised");
    }

    #[test]
    fn a_listener_off_loopback_needs_tls_and_auth_or_allow_insecure() {
        let check =
            |addr: &str, tls, auth, allow| exposure("listen", addr.parse().unwrap(), tls, auth, allow);
        for loopback in ["127.0.0.1:7070", "127.8.9.10:0", "[::1]:7070", "[::ffff:127.0.0.1]:7070"] {
            check(loopback, false, false, false).expect(loopback);
        }
        for exposed in ["0.0.0.0:7070", "[::]:0", "10.1.2.3:7070", "192.168.0.1:1", "[fe80::1]:7070"] {
            let err = check(exposed, false, false, false).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "invalid listen: --listen {exposed} is reachable from other hosts, but the broker has no \
                     TLS (--tls-cert, --tls-key) and --auth required: add them, bind a loopback address, \
                     or pass --allow-insecure"
                )
            );
            let no_auth = check(exposed, true, false, false).unwrap_err().to_string();
            assert!(no_auth.contains("the broker has no --auth required:"), "{no_auth}");
            let no_tls = check(exposed, false, true, false).unwrap_err().to_string();
            assert!(no_tls.contains("the broker has no TLS (--tls-cert, --tls-key):"), "{no_tls}");
            check(exposed, true, true, false).expect("TLS and authentication");
            check(exposed, false, false, true).expect("--allow-insecure");
        }
        // The console on the metrics listener needs only authentication.
        let mut console = Config::new("unused");
        let exposed = "0.0.0.0:7071".parse().unwrap();
        let err = console.check_console_exposure(exposed).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid metrics_listen: --metrics-listen 0.0.0.0:7071 is reachable"),
            "{err}"
        );
        assert!(err.contains("--console off"), "{err}");
        console.check_console_exposure("127.0.0.1:7071".parse().unwrap()).expect("loopback");
        console.auth = Auth::Required;
        console.check_console_exposure(exposed).expect("users log in");
        console.auth = Auth::None;
        console.console = false;
        console.check_console_exposure(exposed).expect("no console");
        // The Kafka listener is checked by `validate`.
        let mut config = kafka("0.0.0.0:9092", Some(("10.1.2.3", 9092)));
        config.allow_insecure = false;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("invalid kafka_listen: --kafka-listen 0.0.0.0:9092 is reachable"), "{err}");
        config.allow_insecure = true;
        config.validate().expect("allowed");
    }
}
