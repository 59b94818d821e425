//! Who a client proved to be: the subject's common name and the subject
//! alternative names of its verified certificate.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

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

/// Which name of a verified client certificate is the user it authenticates
/// as (`--tls-principal-from`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrincipalFrom {
    /// The subject's common name; without one, the first DNS name among the
    /// subject alternative names.
    #[default]
    Cn,
    /// The first DNS name among the subject alternative names.
    SanDns,
    /// The first e-mail address among the subject alternative names.
    SanEmail,
}

impl FromStr for PrincipalFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<PrincipalFrom, String> {
        match s {
            "cn" => Ok(PrincipalFrom::Cn),
            "san-dns" => Ok(PrincipalFrom::SanDns),
            "san-email" => Ok(PrincipalFrom::SanEmail),
            _ => Err(format!("`{s}` is not one of cn, san-dns, san-email")),
        }
    }
}

impl fmt::Display for PrincipalFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrincipalFrom::Cn => "cn",
            PrincipalFrom::SanDns => "san-dns",
            PrincipalFrom::SanEmail => "san-email",
        })
    }
}

impl PeerIdentity {
    /// The user name the certificate stands for, by `from`; `None` when the
    /// certificate has no such name. The name is used as written (no case
    /// folding); whether such a user exists is for the caller to check.
    pub fn user_name(&self, from: PrincipalFrom) -> Option<&str> {
        let name = match from {
            PrincipalFrom::Cn => {
                self.common_name.as_deref().or_else(|| self.dns_names.first().map(String::as_str))
            }
            PrincipalFrom::SanDns => self.dns_names.first().map(String::as_str),
            PrincipalFrom::SanEmail => self.emails.first().map(String::as_str),
        };
        name.filter(|n| !n.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_its_user_by_the_chosen_field() {
        let full = PeerIdentity {
            common_name: Some("alice".into()),
            dns_names: vec!["alice.example".into(), "second.example".into()],
            emails: vec!["alice@example.com".into()],
            ..PeerIdentity::default()
        };
        assert_eq!(full.user_name(PrincipalFrom::Cn), Some("alice"));
        assert_eq!(full.user_name(PrincipalFrom::SanDns), Some("alice.example"));
        assert_eq!(full.user_name(PrincipalFrom::SanEmail), Some("alice@example.com"));
        // Without a CN, `cn` falls back to the first DNS name only.
        let no_cn = PeerIdentity { common_name: None, ..full.clone() };
        assert_eq!(no_cn.user_name(PrincipalFrom::Cn), Some("alice.example"));
        let only_email = PeerIdentity { emails: vec!["bob@example.com".into()], ..PeerIdentity::default() };
        assert_eq!(only_email.user_name(PrincipalFrom::Cn), None);
        assert_eq!(only_email.user_name(PrincipalFrom::SanDns), None);
        let empty_cn = PeerIdentity { common_name: Some(String::new()), ..PeerIdentity::default() };
        assert_eq!(empty_cn.user_name(PrincipalFrom::Cn), None);
        for from in [PrincipalFrom::Cn, PrincipalFrom::SanDns, PrincipalFrom::SanEmail] {
            assert_eq!(from.to_string().parse::<PrincipalFrom>(), Ok(from));
        }
        assert!("CN".parse::<PrincipalFrom>().unwrap_err().contains("cn, san-dns, san-email"));
    }
}
