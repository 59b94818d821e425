//! Who a client proved to be: the subject's common name and the subject
//! alternative names of its verified certificate.

use std::fmt;
use std::net::IpAddr;

use x509_parser::extensions::GeneralName;

/// The names in a client's verified certificate, for the adapters to log and,
/// later, to authorize by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name (CN), if it has one.
    pub common_name: Option<String>,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// E-mail addresses among the subject alternative names.
    pub emails: Vec<String>,
    /// URIs among the subject alternative names (e.g. SPIFFE ids).
    pub uris: Vec<String>,
}

impl PeerIdentity {
    /// The names of a DER certificate; `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<PeerIdentity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut identity = PeerIdentity {
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ..PeerIdentity::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => identity.dns_names.push((*n).to_owned()),
                    GeneralName::RFC822Name(n) => identity.emails.push((*n).to_owned()),
                    GeneralName::URI(n) => identity.uris.push((*n).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            identity.ip_addresses.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            identity.ip_addresses.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(identity)
    }

    /// The name to know the client by: the common name, else the first DNS
    /// name, e-mail or URI.
    pub fn name(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .or_else(|| self.dns_names.first().map(String::as_str))
            .or_else(|| self.emails.first().map(String::as_str))
            .or_else(|| self.uris.first().map(String::as_str))
    }
}

impl fmt::Display for PeerIdentity {
    /// `CN=alice, DNS:alice.example, IP:10.0.0.1`, or `(no names)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.common_name.iter().map(|n| format!("CN={n}")));
        parts.extend(self.dns_names.iter().map(|n| format!("DNS:{n}")));
        parts.extend(self.ip_addresses.iter().map(|n| format!("IP:{n}")));
        parts.extend(self.emails.iter().map(|n| format!("email:{n}")));
        parts.extend(self.uris.iter().map(|n| format!("URI:{n}")));
        if parts.is_empty() { f.write_str("(no names)") } else { f.write_str(&parts.join(", ")) }
    }
}
