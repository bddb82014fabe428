//! Addresses as genesis names them: an IP socket address, or a DNS name and
//! a port. Parsing and display live here (genesis uses them); looking a
//! name up is the transport's business (`net::addr`): a name is resolved
//! again at every dial, never once for all, since a Kubernetes pod, a
//! container or a re-provisioned host comes back with a new IP under the
//! same name.

use std::fmt;
use std::net::SocketAddr;

/// The longest DNS name (RFC 1035 §2.3.4, without the trailing dot).
const NAME_BYTES_MAX: usize = 253;
/// The longest label of a name.
const LABEL_BYTES_MAX: usize = 63;

/// A replica's address from genesis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A literal address: used as is.
    Ip(SocketAddr),
    /// A DNS name (lower case), resolved at each dial.
    Name { host: String, port: u16 },
}

impl PeerAddr {
    /// Parses `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT` (`NAME` made of
    /// letters, digits, `-` and `.`, as a host name must be).
    pub fn parse(text: &str) -> Result<PeerAddr, String> {
        if let Ok(ip) = text.parse::<SocketAddr>() {
            return Ok(PeerAddr::Ip(ip));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("'{text}' is not host:port"));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("'{text}': the port '{port}' is not a number in 0..=65535"))?;
        check_name(host).map_err(|why| format!("'{text}' {why}"))?;
        Ok(PeerAddr::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Ip(a) => a.port(),
            PeerAddr::Name { port, .. } => *port,
        }
    }

    /// The address itself if it is literal.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Name { .. } => None,
        }
    }

    /// Is the literal address IPv6? (A name: not known before it resolves.)
    pub fn is_ipv6(&self) -> bool {
        matches!(self, PeerAddr::Ip(a) if a.is_ipv6())
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> PeerAddr {
        PeerAddr::Ip(a)
    }
}

/// A host name as RFC 1123 allows it: dot-separated labels of letters,
/// digits and inner hyphens, not all digits (that would be a bad IP).
fn check_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("has an empty host".into());
    }
    if host.len() > NAME_BYTES_MAX {
        return Err(format!(
            "has a host name of {} bytes, over the {NAME_BYTES_MAX} DNS allows",
            host.len()
        ));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= LABEL_BYTES_MAX
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(
                "is neither an IP address nor a host name (labels of 1..=63 letters, digits and inner '-', joined by '.')".into()
            );
        }
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("is not a valid IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_names_and_refuses_the_rest() {
        assert_eq!(
            PeerAddr::parse("10.0.0.1:26000").unwrap(),
            PeerAddr::Ip("10.0.0.1:26000".parse().unwrap())
        );
        assert_eq!(
            PeerAddr::parse("[::1]:7").unwrap(),
            PeerAddr::Ip("[::1]:7".parse().unwrap())
        );
        assert_eq!(
            PeerAddr::parse("Replica-0.pbft.NS.svc.cluster.local:26000").unwrap(),
            PeerAddr::Name {
                host: "replica-0.pbft.ns.svc.cluster.local".into(),
                port: 26000
            }
        );
        assert_eq!(
            PeerAddr::parse("localhost:1").unwrap().to_string(),
            "localhost:1"
        );
        for bad in [
            "localhost",
            "localhost:",
            "localhost:65536",
            ":80",
            "a..b:1",
            "-a:1",
            "a-:1",
            "a_b:1",
            "1.2.3:80",
            "999.1.1.1:80",
            "::1:80",
            "host name:1",
        ] {
            assert!(PeerAddr::parse(bad).is_err(), "{bad} was accepted");
        }
        let long = format!("{}.example:1", "a".repeat(64));
        assert!(PeerAddr::parse(&long).unwrap_err().contains("labels"));
    }
}
