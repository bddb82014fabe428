//! Genesis: the replicas, their keys and addresses, the funded accounts and
//! the protocol parameters of one network. Its hash is the [`NetworkId`] that
//! every signature and every store is bound to.
//!
//! The file is JSON; unknown keys are refused. The hash is taken over a
//! canonical encoding built field by field (not over the JSON text), so
//! reformatting the file does not change the network.

use crate::addr::PeerAddr;
use crate::cluster::Cluster;
use crate::consensus::Config;
use crate::crypto::{self, Digest, Domain, NetworkId, PublicKey, Verifier};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    pub chain_id: String,
    pub replicas: Vec<GenesisReplica>,
    pub accounts: Vec<GenesisAccount>,
    pub consensus: Config,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisReplica {
    pub id: u32,
    /// Hex ed25519 public key.
    pub public_key: String,
    /// Replica-to-replica QUIC address: `IP:PORT` or `NAME:PORT` (a DNS
    /// name, looked up again at every dial).
    pub p2p_addr: String,
    /// Client QUIC address, in the same form.
    pub client_addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// Hex ed25519 public key.
    pub account: String,
    pub balance: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("cannot read genesis {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid genesis JSON.
    #[error("genesis {path} is not valid: {detail}")]
    Parse { path: String, detail: String },
    /// A value is out of range; the message names the key.
    #[error("invalid genesis: {0}")]
    Invalid(String),
}

/// A checked genesis, ready to use.
#[derive(Clone, Debug)]
pub struct Genesis {
    pub file: GenesisFile,
    pub network: NetworkId,
    pub cluster: Cluster,
    pub replica_keys: Vec<PublicKey>,
    pub p2p_addrs: Vec<PeerAddr>,
    pub client_addrs: Vec<PeerAddr>,
    pub balances: Vec<(PublicKey, u64)>,
    pub verifier: Verifier,
}

impl Genesis {
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let file: GenesisFile = serde_json::from_str(&text).map_err(|e| GenesisError::Parse {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Genesis::from_file(file)
    }

    /// Checks every field; addresses may be `sim` in simulations (no network).
    /// The largest message the parameters allow must stay under
    /// [`MESSAGE_BYTES_CEILING`].
    pub fn from_file(file: GenesisFile) -> Result<Genesis, GenesisError> {
        let invalid = |m: String| GenesisError::Invalid(m);
        if file.chain_id.trim().is_empty() {
            return Err(invalid("chain_id must not be empty".into()));
        }
        let cluster = Cluster::new(file.replicas.len() as u32)
            .map_err(|e| invalid(format!("replicas: {e}")))?;
        file.consensus
            .validate()
            .map_err(|e| invalid(format!("consensus.{e}")))?;
        let largest = crate::consensus::message_bytes_max(&file.consensus, file.replicas.len());
        if largest > MESSAGE_BYTES_CEILING {
            return Err(invalid(format!(
                "consensus: a full NEW-VIEW of this network could reach {} MiB, over the {} MiB any replica accepts; \
                 lower consensus.watermark_window or consensus.batch_txs_max",
                largest >> 20,
                MESSAGE_BYTES_CEILING >> 20
            )));
        }
        let mut replica_keys = Vec::new();
        let mut p2p_addrs = Vec::new();
        let mut client_addrs = Vec::new();
        for (i, r) in file.replicas.iter().enumerate() {
            if r.id as usize != i {
                return Err(invalid(format!(
                    "replicas[{i}].id is {} but must be {i} (replicas are listed in id order)",
                    r.id
                )));
            }
            let parsed = PublicKey::from_hex(&r.public_key).map(|k| (k, k.verifying_key()));
            let key = match parsed {
                Some((k, Some(v))) if !v.is_weak() => k,
                Some((_, Some(_))) => {
                    return Err(invalid(format!(
                        "replicas[{i}].public_key is a small-order (weak) key: no signature by it is ever accepted"
                    )))
                }
                _ => {
                    return Err(invalid(format!(
                        "replicas[{i}].public_key is not an ed25519 key"
                    )))
                }
            };
            if replica_keys.contains(&key) {
                return Err(invalid(format!(
                    "replicas[{i}].public_key repeats another replica's key"
                )));
            }
            replica_keys.push(key);
            // Simulated networks name no addresses at all: a mix would shift
            // every later replica's address onto the wrong replica.
            let simulated = file.replicas[0].p2p_addr == "sim";
            if (r.p2p_addr == "sim") != simulated || (r.client_addr == "sim") != simulated {
                return Err(invalid(format!(
                    "replicas[{i}] has an address 'sim' and another not, or differs from replicas[0] in it: either every replica's addresses are 'sim' (a simulation) or none"
                )));
            }
            if simulated {
                continue;
            }
            let parse = |field: &str, text: &str| -> Result<PeerAddr, GenesisError> {
                PeerAddr::parse(text).map_err(|why| invalid(format!("replicas[{i}].{field} {why}")))
            };
            let p2p = parse("p2p_addr", &r.p2p_addr)?;
            let client = parse("client_addr", &r.client_addr)?;
            if p2p == client {
                return Err(invalid(format!(
                    "replicas[{i}].p2p_addr and client_addr are both {p2p}: they need a port each"
                )));
            }
            for (field, addr) in [("p2p_addr", &p2p), ("client_addr", &client)] {
                let taken = p2p_addrs
                    .iter()
                    .position(|a| a == addr)
                    .map(|j| (j, "p2p_addr"))
                    .or_else(|| {
                        client_addrs
                            .iter()
                            .position(|a| a == addr)
                            .map(|j| (j, "client_addr"))
                    });
                if let Some((j, other)) = taken {
                    return Err(invalid(format!(
                        "replicas[{i}].{field} {addr} is also replicas[{j}].{other}: every replica needs addresses of its own"
                    )));
                }
            }
            p2p_addrs.push(p2p);
            client_addrs.push(client);
        }
        let mut balances = Vec::new();
        let mut total: u64 = 0;
        for (i, a) in file.accounts.iter().enumerate() {
            let key = PublicKey::from_hex(&a.account).ok_or_else(|| {
                invalid(format!("accounts[{i}].account is not a 64-hex-digit key"))
            })?;
            if key.point().is_none() {
                return Err(invalid(format!(
                    "accounts[{i}].account can never sign a transfer (not a canonical ed25519 key of large order); its funds could never move"
                )));
            }
            if let Some(j) = balances.iter().position(|(k, _)| *k == key) {
                return Err(invalid(format!(
                    "accounts[{i}].account repeats accounts[{j}].account: list each account once"
                )));
            }
            total = total
                .checked_add(a.balance)
                .ok_or_else(|| invalid("accounts: total supply overflows u64".into()))?;
            balances.push((key, a.balance));
        }
        let network = NetworkId(canonical_hash(&file));
        let verifier = Verifier::new(network, &replica_keys)
            .ok_or_else(|| invalid("replicas: a public key is not a valid point".into()))?;
        Ok(Genesis {
            file,
            network,
            cluster,
            replica_keys,
            p2p_addrs,
            client_addrs,
            balances,
            verifier,
        })
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.file).expect("genesis serialises");
        std::fs::write(path, text + "\n")
    }

    pub fn config(&self) -> &Config {
        &self.file.consensus
    }

    pub fn total_supply(&self) -> u128 {
        self.balances.iter().map(|(_, b)| *b as u128).sum()
    }
}

fn canonical_hash(file: &GenesisFile) -> Digest {
    let mut bytes = Vec::new();
    let mut put = |b: &[u8]| {
        bytes.extend_from_slice(&(b.len() as u64).to_le_bytes());
        bytes.extend_from_slice(b);
    };
    put(file.chain_id.as_bytes());
    for r in &file.replicas {
        put(&r.id.to_le_bytes());
        put(r.public_key.to_lowercase().as_bytes());
        put(r.p2p_addr.as_bytes());
        put(r.client_addr.as_bytes());
    }
    for a in &file.accounts {
        put(a.account.to_lowercase().as_bytes());
        put(&a.balance.to_le_bytes());
    }
    let c = &file.consensus;
    for v in [
        c.checkpoint_interval,
        c.watermark_window,
        c.batch_txs_max as u64,
        c.pipeline_depth,
        c.request_timeout_ms,
        c.view_change_timeout_max_ms,
        c.retransmit_ms,
        c.pending_requests_max as u64,
        c.pending_per_client_max as u64,
        c.timestamp_skew_max_ms,
        c.future_messages_max as u64,
        c.fetch_batches_max,
    ] {
        put(&v.to_le_bytes());
    }
    crypto::digest(Domain::Genesis, &[&bytes])
}

/// Builds a genesis for `n` replicas with the given keys and funded accounts.
/// The largest message (frame) any network may need: the frame cap, and
/// with it each peer's memory budget, grows with the parameters up to here.
pub const MESSAGE_BYTES_CEILING: usize = 256 * 1024 * 1024;

pub fn build(
    chain_id: &str,
    replica_keys: &[PublicKey],
    addrs: &[(String, String)],
    accounts: &[(PublicKey, u64)],
    consensus: Config,
) -> Result<Genesis, GenesisError> {
    let file = GenesisFile {
        chain_id: chain_id.to_string(),
        replicas: replica_keys
            .iter()
            .zip(addrs)
            .enumerate()
            .map(|(i, (k, (p2p, client)))| GenesisReplica {
                id: i as u32,
                public_key: k.to_hex(),
                p2p_addr: p2p.clone(),
                client_addr: client.clone(),
            })
            .collect(),
        accounts: accounts
            .iter()
            .map(|(k, b)| GenesisAccount {
                account: k.to_hex(),
                balance: *b,
            })
            .collect(),
        consensus,
    };
    Genesis::from_file(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPair;

    fn sample() -> Genesis {
        let keys: Vec<_> = (0..4)
            .map(|i| KeyPair::from_label(&format!("g{i}")).public())
            .collect();
        let addrs: Vec<_> = (0..4)
            .map(|i| {
                (
                    format!("127.0.0.1:{}", 7000 + i * 10),
                    format!("127.0.0.1:{}", 7001 + i * 10),
                )
            })
            .collect();
        let acct = KeyPair::from_label("acct").public();
        build("test", &keys, &addrs, &[(acct, 1000)], Config::default()).unwrap()
    }

    #[test]
    fn network_id_binds_every_field_but_not_formatting() {
        let g = sample();
        let again = Genesis::from_file(
            serde_json::from_str(&serde_json::to_string(&g.file).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(g.network, again.network);
        let mut f = g.file.clone();
        f.accounts[0].balance += 1;
        assert_ne!(Genesis::from_file(f).unwrap().network, g.network);
        let mut f = g.file.clone();
        f.consensus.checkpoint_interval = 8;
        f.consensus.watermark_window = 32;
        assert_ne!(Genesis::from_file(f).unwrap().network, g.network);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let g = sample();
        let mut f = g.file.clone();
        f.replicas.pop();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("replicas"), "{e}");
        let mut f = g.file.clone();
        f.replicas[2].public_key = "zz".into();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("replicas[2].public_key"), "{e}");
        let mut f = g.file.clone();
        f.consensus.watermark_window = 3;
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("consensus.watermark_window"), "{e}");
        let mut f = g.file.clone();
        f.accounts[0].account = "nothex".into();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("accounts[0].account"), "{e}");
        // The identity point: a valid encoding of a point of order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let identity = hex::encode(identity);
        let mut f = g.file.clone();
        f.replicas[1].public_key = identity.clone();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("replicas[1].public_key is a small-order"), "{e}");
        let mut f = g.file.clone();
        f.accounts[0].account = identity;
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("accounts[0].account can never sign"), "{e}");
        // Issue 24, defect 10: a replica without addresses among replicas
        // with them (which shifted every later replica's address), two
        // replicas on one address, and an account listed twice are refused,
        // naming both entries.
        let mut f = g.file.clone();
        f.replicas[1].p2p_addr = "sim".into();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("replicas[1] has an address 'sim'"), "{e}");
        let mut f = g.file.clone();
        f.replicas[3].p2p_addr = f.replicas[1].p2p_addr.clone();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(
            e.contains("replicas[3].p2p_addr 127.0.0.1:7010 is also replicas[1].p2p_addr"),
            "{e}"
        );
        let mut f = g.file.clone();
        f.replicas[2].client_addr = f.replicas[0].p2p_addr.clone();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(
            e.contains("replicas[2].client_addr 127.0.0.1:7000 is also replicas[0].p2p_addr"),
            "{e}"
        );
        let mut f = g.file.clone();
        f.replicas[0].client_addr = f.replicas[0].p2p_addr.clone();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("replicas[0].p2p_addr and client_addr"), "{e}");
        // Issue 20: DNS names are addresses too (looked up at each dial);
        // a name is compared without case, and a malformed one is refused.
        let mut f = g.file.clone();
        for (i, r) in f.replicas.iter_mut().enumerate() {
            r.p2p_addr = format!("replica-{i}.pbft.ns.svc.cluster.local:26000");
            r.client_addr = format!("replica-{i}.pbft.ns.svc.cluster.local:26001");
        }
        let named = Genesis::from_file(f.clone()).unwrap();
        assert_eq!(
            named.p2p_addrs[2].to_string(),
            "replica-2.pbft.ns.svc.cluster.local:26000"
        );
        assert!(named.p2p_addrs.iter().all(|a| a.ip().is_none()));
        let mut same = f.clone();
        same.replicas[1].p2p_addr = "REPLICA-0.pbft.ns.svc.cluster.local:26000".into();
        let e = Genesis::from_file(same).unwrap_err().to_string();
        assert!(e.contains("replicas[1].p2p_addr replica-0.pbft.ns.svc.cluster.local:26000 is also replicas[0].p2p_addr"), "{e}");
        f.replicas[3].client_addr = "replica_3:26001".into();
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("replicas[3].client_addr 'replica_3:26001' is neither an IP address nor a host name"), "{e}");
        let mut f = g.file.clone();
        f.accounts.push(f.accounts[0].clone());
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(e.contains("accounts[1].account repeats accounts[0]"), "{e}");
        // Issue 17, defect 10: parameters whose full NEW-VIEW could not fit
        // in any frame are refused, naming the keys to lower; the defaults
        // fit, and the frame cap the runtime uses covers them.
        let mut f = g.file.clone();
        f.consensus.batch_txs_max = 4096;
        let e = Genesis::from_file(f).unwrap_err().to_string();
        assert!(
            e.contains("consensus.watermark_window or consensus.batch_txs_max"),
            "{e}"
        );
        let largest = crate::consensus::message_bytes_max(&g.file.consensus, 4);
        assert!(largest > crate::codec::FRAME_BYTES_MAX, "{largest}");
        assert!(largest <= MESSAGE_BYTES_CEILING);
        let json = serde_json::to_string(&g.file)
            .unwrap()
            .replacen("{", "{\"extra\":1,", 1);
        assert!(serde_json::from_str::<GenesisFile>(&json).is_err());
    }
}
