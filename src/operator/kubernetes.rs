//! `pbft-replica testnet --kubernetes DIR`: Kubernetes manifests for a
//! testnet, and `start --provision-from DIR`, which a pod of the StatefulSet
//! uses to install its own files into its home.
//!
//! Genesis names each replica by its pod's stable DNS name under the
//! headless Service, `replica-I.pbft.NS.svc`: a pod's IP changes when it is
//! rescheduled, its name does not, and replicas look a name up again at
//! every dial. The name is relative to the cluster domain, so it resolves
//! through the pods' search path whatever the domain is. The Service
//! publishes not-ready pods: a replica is ready only once its peers are
//! connected, so they must find each other before. Every pod listens on
//! the same three ports (p2p and client over UDP, operations over TCP), on
//! 0.0.0.0.
//!
//! ```text
//! DIR/kustomization.yaml
//! DIR/namespace.yaml
//! DIR/services.yaml        the headless Service (DNS names of the pods)
//! DIR/configmap.yaml       genesis.json and every replica's config.toml
//! DIR/secrets.yaml         one Secret per replica: its node.key
//! DIR/statefulset.yaml
//! DIR/pdb.yaml
//! ```

use super::testnet::{Testnet, TestnetError, TestnetOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The default image (what `scripts/image.sh` builds).
pub const DEFAULT_IMAGE: &str = "pbft-ledger:latest";
/// The image's user (scripts/image.sh).
pub const RUN_AS: u32 = 10001;
/// The replica's home in the image: the PersistentVolumeClaim is mounted
/// here (the store in `data/` and the view record beside it).
pub const HOME: &str = "/home/replica";
/// Where the ConfigMap and the Secrets are mounted: `replica-I/` each.
pub const PROVISION_DIR: &str = "/etc/pbft";
/// The StatefulSet's name: its pods are `replica-0`, `replica-1`, ...
pub const STATEFULSET: &str = "replica";
/// The headless Service governing the StatefulSet.
pub const HEADLESS: &str = "pbft";

#[derive(Clone, Debug)]
pub struct KubernetesOptions {
    pub dir: PathBuf,
    pub namespace: String,
    pub image: String,
}

/// Checks `k` and returns the per-replica hosts (the pods' DNS names under
/// the headless Service) to pass to the testnet as [`TestnetOptions::hosts`].
pub fn hosts(k: &KubernetesOptions, replicas: u32) -> Result<Vec<String>, TestnetError> {
    dns_label(&k.namespace)
        .map_err(|e| TestnetError::Invalid(format!("--namespace '{}': {e}", k.namespace)))?;
    if k.image.is_empty() || k.image.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(TestnetError::Invalid(format!(
            "--image '{}': not an image reference",
            k.image
        )));
    }
    if k.dir.join("kustomization.yaml").exists() {
        return Err(TestnetError::Invalid(format!(
            "--kubernetes {}: already holds manifests (kustomization.yaml); remove it first",
            k.dir.display()
        )));
    }
    Ok((0..replicas)
        .map(|i| format!("{STATEFULSET}-{i}.{HEADLESS}.{}.svc", k.namespace))
        .collect())
}

/// RFC 1123 label: what a namespace name must be.
fn dns_label(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
    }
}

/// A YAML scalar for `text`: a literal block when that is exact, else a
/// JSON string (valid YAML).
fn scalar(text: &str, indent: usize) -> String {
    let block_safe = text.ends_with('\n')
        && !text.ends_with("\n\n")
        && !text.starts_with([' ', '\t', '\n'])
        && !text.contains('\r')
        && !text.contains('\t');
    if block_safe {
        let pad = " ".repeat(indent);
        let mut s = String::from("|\n");
        for line in text.lines() {
            if line.is_empty() {
                s.push('\n');
            } else {
                s += &format!("{pad}{line}\n");
            }
        }
        s.pop();
        s
    } else {
        serde_json::to_string(text).expect("a string serialises")
    }
}

fn read(path: &Path) -> Result<String, TestnetError> {
    std::fs::read_to_string(path).map_err(|source| TestnetError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, TestnetError> {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()).map(|_| f))
        .map_err(|source| TestnetError::Io {
            path: path.display().to_string(),
            source,
        })?;
    file.flush().map_err(|source| TestnetError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

const HEADER: &str =
    "# Written by `pbft-replica testnet --kubernetes`; see README.md, \"Kubernetes\".\n";

/// Writes the manifests for the testnet `t` (generated from `opts`, whose
/// `hosts` came from [`hosts`]) to `k.dir`. Returns the files written.
pub fn generate(
    opts: &TestnetOptions,
    k: &KubernetesOptions,
    t: &Testnet,
) -> Result<Vec<PathBuf>, TestnetError> {
    let n = opts.replicas;
    let ns = &k.namespace;
    let p2p = opts.base_port as u32;
    let (client, ops) = (p2p + 1, p2p + 2);
    std::fs::create_dir_all(&k.dir).map_err(|source| TestnetError::Io {
        path: k.dir.display().to_string(),
        source,
    })?;
    let labels = "app.kubernetes.io/name: pbft-ledger\n    app.kubernetes.io/component: replica";
    let mut written = Vec::new();

    written.push(write(
        &k.dir,
        "namespace.yaml",
        &format!("{HEADER}apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
    )?);

    // The headless Service gives each pod the DNS name genesis holds.
    let ports = format!(
        "  ports:\n    - name: p2p\n      protocol: UDP\n      port: {p2p}\n      targetPort: p2p\n    \
         - name: client\n      protocol: UDP\n      port: {client}\n      targetPort: client\n    \
         - name: ops\n      protocol: TCP\n      port: {ops}\n      targetPort: ops\n"
    );
    let s = format!(
        "{HEADER}# The headless Service governing the StatefulSet: pod replica-I is\n\
         # replica-I.{HEADLESS}.{ns}.svc inside the cluster, the name genesis holds\n\
         # (replicas look it up again at every dial, so a rescheduled pod with a\n\
         # new IP is found). Not-ready pods are published: a replica turns ready\n\
         # only once it reaches its peers, so they must find each other first.\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: {HEADLESS}\n  namespace: {ns}\n  labels:\n    {labels}\n\
         spec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector:\n    {labels}\n{ports}"
    );
    written.push(write(&k.dir, "services.yaml", &s)?);

    // The ConfigMap: genesis once, every replica's config.toml.
    let genesis = read(&t.genesis_path)?;
    let mut s = format!(
        "{HEADER}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pbft-config\n  namespace: {ns}\n  labels:\n    {labels}\n\
         data:\n  genesis.json: {}\n",
        scalar(&genesis, 4)
    );
    for (i, home) in t.homes.iter().enumerate() {
        let config = read(&home.join(crate::node::config::CONFIG_FILE))?;
        s += &format!("  replica-{i}.config.toml: {}\n", scalar(&config, 4));
    }
    written.push(write(&k.dir, "configmap.yaml", &s)?);

    // One Secret per replica: its key.
    let mut s = String::from(HEADER);
    for (i, home) in t.homes.iter().enumerate() {
        let key = read(&home.join("node.key"))?;
        if i > 0 {
            s += "---\n";
        }
        s += &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {STATEFULSET}-{i}-key\n  namespace: {ns}\n  labels:\n    {labels}\n\
             type: Opaque\nstringData:\n  node.key: {}\n",
            serde_json::to_string(key.trim()).expect("a string serialises")
        );
    }
    written.push(write(&k.dir, "secrets.yaml", &s)?);

    // The StatefulSet.
    let mut config_items =
        String::from("                - key: genesis.json\n                  path: genesis.json\n");
    let mut key_sources = String::new();
    for i in 0..n {
        config_items += &format!(
            "                - key: replica-{i}.config.toml\n                  path: replica-{i}/config.toml\n"
        );
        key_sources += &format!(
            "          - secret:\n              name: {STATEFULSET}-{i}-key\n              items:\n                \
             - key: node.key\n                  path: replica-{i}/node.key\n"
        );
    }
    // The projected volume's sources, four columns deeper than built.
    let sources: String = format!(
        "          - configMap:\n              name: pbft-config\n              items:\n{config_items}{key_sources}"
    )
    .lines()
    .map(|line| format!("    {line}\n"))
    .collect();
    let s = format!(
        "{HEADER}# Pod replica-I runs `pbft-replica start --provision-from {PROVISION_DIR}`: it\n\
         # copies {PROVISION_DIR}/replica-I/{{config.toml,node.key}} and genesis into its\n\
         # home ({HOME}, the PersistentVolumeClaim: store and view record), choosing\n\
         # replica-I by its hostname (the image has no shell). It refuses to start\n\
         # if the volume already holds another replica's key.\n\
         #\n\
         # Every pod mounts every replica's Secret (a StatefulSet has one pod\n\
         # template): anyone who can read one pod's files can read all keys.\n\
         # Restrict exec/attach in this namespace, or run one StatefulSet per\n\
         # replica, before trusting the f-fault bound to separate operators.\n\
         apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {STATEFULSET}\n  namespace: {ns}\n  labels:\n    {labels}\n\
         spec:\n  serviceName: {HEADLESS}\n  # The replica count is fixed by genesis: change it by generating a new\n  \
         # testnet (--replicas), not by scaling.\n  replicas: {n}\n  \
         # Start all pods at once: a replica waits for its peers, so ordered\n  \
         # start-up would stall behind the first pod's readiness.\n  podManagementPolicy: Parallel\n  \
         updateStrategy:\n    type: RollingUpdate\n  selector:\n    matchLabels:\n      {labels2}\n  \
         template:\n    metadata:\n      labels:\n        {labels3}\n      annotations:\n        \
         prometheus.io/scrape: \"true\"\n        prometheus.io/port: \"{ops}\"\n        prometheus.io/path: /metrics\n    \
         spec:\n      # SIGTERM makes the replica sync its store and close its\n      \
         # connections; give it time before SIGKILL.\n      terminationGracePeriodSeconds: 30\n      \
         automountServiceAccountToken: false\n      enableServiceLinks: false\n      \
         securityContext:\n        runAsNonRoot: true\n        runAsUser: {RUN_AS}\n        runAsGroup: {RUN_AS}\n        \
         fsGroup: {RUN_AS}\n        seccompProfile:\n          type: RuntimeDefault\n      \
         containers:\n        - name: replica\n          image: {image}\n          imagePullPolicy: IfNotPresent\n          \
         command: [\"/usr/local/bin/pbft-replica\"]\n          \
         args: [\"start\", \"--home\", \"{HOME}\", \"--provision-from\", \"{PROVISION_DIR}\"]\n          \
         ports:\n            - name: p2p\n              containerPort: {p2p}\n              protocol: UDP\n            \
         - name: client\n              containerPort: {client}\n              protocol: UDP\n            \
         - name: ops\n              containerPort: {ops}\n              protocol: TCP\n          \
         readinessProbe:\n            httpGet:\n              path: /readyz\n              port: ops\n            \
         periodSeconds: 5\n            timeoutSeconds: 3\n            failureThreshold: 3\n          \
         livenessProbe:\n            httpGet:\n              path: /healthz\n              port: ops\n            \
         initialDelaySeconds: 10\n            periodSeconds: 10\n            timeoutSeconds: 3\n            failureThreshold: 6\n          \
         resources:\n            requests:\n              cpu: 250m\n              memory: 256Mi\n            \
         limits:\n              memory: 1Gi\n          \
         securityContext:\n            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true\n            \
         privileged: false\n            capabilities:\n              drop: [\"ALL\"]\n          \
         volumeMounts:\n            - name: home\n              mountPath: {HOME}\n            \
         - name: provision\n              mountPath: {PROVISION_DIR}\n              readOnly: true\n            \
         - name: tmp\n              mountPath: /tmp\n      \
         volumes:\n        - name: provision\n          projected:\n            defaultMode: 0440\n            sources:\n\
{sources}        \
         - name: tmp\n          emptyDir: {{}}\n  \
         volumeClaimTemplates:\n    - metadata:\n        name: home\n      spec:\n        accessModes: [\"ReadWriteOnce\"]\n        \
         resources:\n          requests:\n            storage: 5Gi\n",
        image = k.image,
        labels2 = labels.replace("\n    ", "\n      "),
        labels3 = labels.replace("\n    ", "\n        "),
    );
    written.push(write(&k.dir, "statefulset.yaml", &s)?);

    let f = (n - 1) / 3;
    let s = format!(
        "{HEADER}# At most one replica may be down for voluntary disruptions (drains,\n\
         # upgrades). With four replicas f = 1: PBFT needs 2f+1 = 3 of them to\n\
         # order anything, so losing more than f stops progress. (This network\n\
         # has {n} replicas, f = {f}; 1 keeps a margin for an unplanned failure.)\n\
         apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {STATEFULSET}\n  namespace: {ns}\n  labels:\n    {labels}\n\
         spec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      {labels2}\n",
        labels2 = labels.replace("\n    ", "\n      "),
    );
    written.push(write(&k.dir, "pdb.yaml", &s)?);

    let s = format!(
        "{HEADER}# kubectl apply -k <this directory>\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\n\
         resources:\n  - namespace.yaml\n  - services.yaml\n  - configmap.yaml\n  - secrets.yaml\n  - statefulset.yaml\n  - pdb.yaml\n\
         # The replica count. Genesis fixes it: to change it, generate a new\n\
         # testnet with `pbft-replica testnet --replicas N --kubernetes DIR`\n\
         # (3f+1: 4, 7, 10, ...); this entry and the StatefulSet must agree.\n\
         replicas:\n  - name: {STATEFULSET}\n    count: {n}\n"
    );
    written.push(write(&k.dir, "kustomization.yaml", &s)?);
    Ok(written)
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot determine the hostname: {0}")]
    Hostname(String),
    #[error("hostname '{0}' does not name a replica directory (expected e.g. replica-0)")]
    BadHostname(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{home} already holds the key of another replica ({found}), not {expected} from {from}; is this another replica's volume?")]
    OtherKey {
        home: String,
        found: String,
        expected: String,
        from: String,
    },
}

/// This machine's hostname (a StatefulSet pod's is its name, `replica-I`).
pub fn hostname() -> Result<String, ProvisionError> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(ProvisionError::Hostname(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).map_err(|_| ProvisionError::Hostname("not UTF-8".into()))
}

/// Installs `from/<hostname>/config.toml`, `from/genesis.json` and
/// `from/<hostname>/node.key` into `home`: configuration and genesis are
/// replaced on every start (a changed ConfigMap applies at the next
/// restart), the key is copied once with mode 0600 and must match
/// afterwards. Returns the replica directory used.
pub fn provision(from: &Path, hostname: &str, home: &Path) -> Result<PathBuf, ProvisionError> {
    let short = hostname.split('.').next().unwrap_or_default();
    let valid = !short.is_empty()
        && short != "."
        && short != ".."
        && short
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(ProvisionError::BadHostname(hostname.into()));
    }
    let src = from.join(short);
    if !src.is_dir() {
        return Err(ProvisionError::Io {
            path: src.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no directory for hostname '{hostname}'"),
            ),
        });
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ProvisionError::Io { path, source }
    };
    std::fs::create_dir_all(home).map_err(io(home))?;
    let copy = |src: &Path, name: &str| -> Result<(), ProvisionError> {
        let text = std::fs::read(src).map_err(io(src))?;
        let tmp = home.join(format!(".{name}.provision"));
        let dst = home.join(name);
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &dst).map_err(io(&dst))
    };
    copy(&src.join("config.toml"), crate::node::config::CONFIG_FILE)?;
    copy(&from.join("genesis.json"), "genesis.json")?;
    let key_src = src.join("node.key");
    let wanted = crate::keyfile::read(&key_src).map_err(|e| ProvisionError::Io {
        path: key_src.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key_dst = home.join("node.key");
    if key_dst.exists() {
        let found = crate::keyfile::read(&key_dst).map_err(|e| ProvisionError::Io {
            path: key_dst.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if found.public() != wanted.public() {
            return Err(ProvisionError::OtherKey {
                home: home.display().to_string(),
                found: found.public().to_hex(),
                expected: wanted.public().to_hex(),
                from: key_src.display().to_string(),
            });
        }
    } else {
        crate::keyfile::write(&key_dst, &wanted).map_err(|e| ProvisionError::Io {
            path: key_dst.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip_as_yaml_literals_or_json() {
        assert_eq!(scalar("a\n\nb\n", 4), "|\n    a\n\n    b");
        assert_eq!(scalar(" lead\n", 4), "\" lead\\n\"");
        assert_eq!(scalar("no newline", 2), "\"no newline\"");
        assert!(dns_label("pbft").is_ok());
        assert!(dns_label("Pbft").is_err());
        assert!(dns_label("-x").is_err());
    }

    #[test]
    fn manifests_name_the_pod_dns_names_genesis_holds() {
        let dir = tempfile::tempdir().unwrap();
        let k = KubernetesOptions {
            dir: dir.path().join("k8s"),
            namespace: "ledger".into(),
            image: DEFAULT_IMAGE.into(),
        };
        let mut opts = TestnetOptions::new(4, dir.path().join("net"));
        opts.hosts = Some(hosts(&k, 4).unwrap());
        let t = crate::operator::testnet::generate(&opts).unwrap();
        let files = generate(&opts, &k, &t).unwrap();
        assert_eq!(files.len(), 7);
        let services = std::fs::read_to_string(k.dir.join("services.yaml")).unwrap();
        assert!(services.contains("clusterIP: None\n  publishNotReadyAddresses: true\n"));
        assert_eq!(services.matches("kind: Service\n").count(), 1);
        for i in 0..4 {
            let loaded = crate::node::config::load(&t.homes[i]).unwrap();
            assert_eq!(
                loaded.runtime.genesis.p2p_addrs[i].to_string(),
                format!("replica-{i}.pbft.ledger.svc:26000")
            );
            assert_eq!(
                loaded.runtime.genesis.client_addrs[i].to_string(),
                format!("replica-{i}.pbft.ledger.svc:26001")
            );
            assert_eq!(loaded.runtime.net.listen.to_string(), "0.0.0.0:26000");
            assert_eq!(loaded.runtime.client_listen.to_string(), "0.0.0.0:26001");
            assert_eq!(
                loaded.runtime.ops_listen.unwrap().to_string(),
                "0.0.0.0:26002"
            );
        }
        let sts = std::fs::read_to_string(k.dir.join("statefulset.yaml")).unwrap();
        assert!(sts.contains("replicas: 4\n") && sts.contains("path: replica-3/node.key"));
        // A second run refuses to overwrite.
        assert!(hosts(&k, 4)
            .unwrap_err()
            .to_string()
            .contains("already holds"));
        let bad = KubernetesOptions {
            namespace: "Bad_NS".into(),
            ..k.clone()
        };
        assert!(hosts(&bad, 4)
            .unwrap_err()
            .to_string()
            .contains("--namespace"));
    }

    #[test]
    fn provision_installs_the_hostnames_files_and_refuses_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TestnetOptions::new(4, dir.path().join("net"));
        let t = crate::operator::testnet::generate(&opts).unwrap();
        // Lay the files out as the pod sees them.
        let from = dir.path().join("etc");
        for (i, home) in t.homes.iter().enumerate() {
            let d = from.join(format!("replica-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(home.join("config.toml"), d.join("config.toml")).unwrap();
            std::fs::copy(home.join("node.key"), d.join("node.key")).unwrap();
        }
        std::fs::copy(&t.genesis_path, from.join("genesis.json")).unwrap();
        let home = dir.path().join("home");
        provision(&from, "replica-2", &home).unwrap();
        let loaded = crate::node::config::load(&home).unwrap();
        assert_eq!(loaded.runtime.me.index(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Again (a restart): fine. As another replica: refused.
        provision(&from, "replica-2.pbft.ledger.svc.cluster.local", &home).unwrap();
        let e = provision(&from, "replica-1", &home).unwrap_err();
        assert!(matches!(e, ProvisionError::OtherKey { .. }), "{e}");
        for bad in ["..", "", "replica-9"] {
            assert!(provision(&from, bad, &home).is_err(), "{bad}");
        }
    }
}
