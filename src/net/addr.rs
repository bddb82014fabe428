//! Looking up the names in genesis ([`PeerAddr::Name`]): at every dial,
//! never once for all — a Kubernetes pod, a container or a re-provisioned
//! host comes back with a new IP under the same name. A name that does not
//! resolve is an ordinary dial failure (logged, retried with backoff),
//! never a fatal error.

use crate::addr::PeerAddr;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

impl PeerAddr {
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
