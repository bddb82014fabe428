//! Addresses as genesis names them: an IP socket address, or a DNS name and
//! a port. A name is looked up again at every dial, never once for all: a
//! Kubernetes pod, a container or a re-provisioned host comes back with a
//! new IP under the same name. A name that does not resolve is an ordinary
//! dial failure (logged, retried with backoff), never a fatal error.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    /// The address to dial now, from a socket bound to `local` (its family
    /// decides which of a name's addresses can be reached: an IPv4 socket
    /// cannot send to IPv6 and the other way round is tried last). Bounded
    /// by `timeout`.
    pub async fn resolve(
        &self,
        resolver: &Resolver,
        local: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<SocketAddr, String> {
        let (host, port) = match self {
            PeerAddr::Ip(a) => return Ok(*a),
            PeerAddr::Name { host, port } => (host, *port),
        };
        let found = match tokio::time::timeout(timeout, resolver.lookup(host, port)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(format!("cannot resolve '{host}': {e}")),
            Err(_) => {
                return Err(format!(
                    "cannot resolve '{host}': no answer within {} ms",
                    timeout.as_millis()
                ))
            }
        };
        let want_v4 = local.map(|l| l.is_ipv4()).unwrap_or(true);
        let pick = found
            .iter()
            .find(|a| a.is_ipv4() == want_v4)
            .or_else(|| found.iter().find(|_| !want_v4))
            .copied();
        pick.ok_or_else(|| {
            let family = if want_v4 { "IPv4" } else { "IPv6" };
            format!("'{host}' resolves to no {family} address (found {found:?})")
        })
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

/// A name table a test changes while the network runs.
pub type NameTable = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

/// Where names are looked up: the system's resolver (`getaddrinfo`, so
/// `/etc/hosts`, the cluster DNS and search domains apply), or a table that
/// a test can change while the network runs.
#[derive(Clone, Default)]
pub enum Resolver {
    #[default]
    System,
    Table(NameTable),
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolver::System => write!(f, "Resolver::System"),
            Resolver::Table(_) => write!(f, "Resolver::Table"),
        }
    }
}

impl Resolver {
    /// A table resolver and the handle to change it.
    pub fn table() -> (Resolver, NameTable) {
        let table = Arc::new(Mutex::new(HashMap::new()));
        (Resolver::Table(table.clone()), table)
    }

    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Resolver::System => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
            Resolver::Table(table) => {
                let table = table.lock().unwrap_or_else(|e| e.into_inner());
                match table.get(host) {
                    Some(ips) if !ips.is_empty() => {
                        Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                    }
                    _ => Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such name in the table",
                    )),
                }
            }
        }
    }
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

    #[tokio::test]
    async fn resolves_names_each_time_and_picks_the_socket_family() {
        let (resolver, table) = Resolver::table();
        let a = PeerAddr::parse("peer:5000").unwrap();
        let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let v6: SocketAddr = "[::1]:0".parse().unwrap();
        let t = Duration::from_secs(1);
        let err = a.resolve(&resolver, Some(v4), t).await.unwrap_err();
        assert!(err.contains("cannot resolve 'peer'"), "{err}");
        table.lock().unwrap().insert(
            "peer".into(),
            vec!["::2".parse().unwrap(), "127.0.0.2".parse().unwrap()],
        );
        assert_eq!(
            a.resolve(&resolver, Some(v4), t).await.unwrap(),
            "127.0.0.2:5000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            a.resolve(&resolver, Some(v6), t).await.unwrap(),
            "[::2]:5000".parse::<SocketAddr>().unwrap()
        );
        // The name moved: the next resolution sees it.
        table
            .lock()
            .unwrap()
            .insert("peer".into(), vec!["127.0.0.3".parse().unwrap()]);
        assert_eq!(
            a.resolve(&resolver, Some(v4), t).await.unwrap(),
            "127.0.0.3:5000".parse::<SocketAddr>().unwrap()
        );
        table
            .lock()
            .unwrap()
            .insert("peer".into(), vec!["::3".parse().unwrap()]);
        let err = a.resolve(&resolver, Some(v4), t).await.unwrap_err();
        assert!(err.contains("no IPv4 address"), "{err}");
        // The system resolver knows localhost (from /etc/hosts).
        let local = PeerAddr::parse("localhost:9").unwrap();
        let got = local
            .resolve(&Resolver::System, Some(v4), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(got.ip().is_loopback() && got.port() == 9, "{got}");
    }
}
