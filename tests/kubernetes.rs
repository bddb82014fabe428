//! `pbft-replica testnet --kubernetes` and `start --provision-from` through
//! the binary: argument errors, exit codes and the refusal of a volume that
//! holds another replica's key. (scripts/k8s-check.sh validates the
//! manifests against the Kubernetes schemas.)

use pbft_ledger::exit;
use std::path::Path;
use std::process::{Command, Output};

const REPLICA: &str = env!("CARGO_BIN_EXE_pbft-replica");

fn run(args: &[&str]) -> Output {
    Command::new(REPLICA)
        .args(args)
        .env_remove("PBFT_HOME")
        .output()
        .expect("pbft-replica runs")
}

/// `testnet --out OUT --kubernetes K` and `extra`.
fn testnet_kubernetes(out: &str, k: &str, extra: &[&str]) -> Output {
    let mut args = vec!["testnet", "--out", out, "--kubernetes", k];
    args.extend_from_slice(extra);
    run(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn testnet_kubernetes_writes_manifests_and_refuses_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    // --kubernetes needs --namespace (a usage error).
    let o = testnet_kubernetes(&p("a"), &p("k"), &[]);
    assert_eq!(o.status.code(), Some(exit::USAGE), "{}", stderr(&o));
    // A namespace that is no DNS label: a configuration error, nothing written.
    let o = testnet_kubernetes(&p("a"), &p("k"), &["--namespace", "No_Such"]);
    assert_eq!(o.status.code(), Some(exit::CONFIG));
    assert!(
        stderr(&o).contains("--namespace 'No_Such'"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("a").exists());
    // One host per replica comes from the manifests: --hosts is refused.
    let o = testnet_kubernetes(
        &p("a"),
        &p("k"),
        &["--namespace", "pbft", "--hosts", "a,b,c,d"],
    );
    assert_eq!(o.status.code(), Some(exit::USAGE), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    assert!(!dir.path().join("a").exists());
    let o = testnet_kubernetes(&p("a"), &p("k"), &["--namespace", "pbft"]);
    assert_eq!(o.status.code(), Some(exit::OK), "{}", stderr(&o));
    for f in [
        "kustomization.yaml",
        "statefulset.yaml",
        "services.yaml",
        "pdb.yaml",
    ] {
        assert!(dir.path().join("k").join(f).is_file(), "{f}");
    }
    // Never over existing manifests.
    let o = testnet_kubernetes(&p("b"), &p("k"), &["--namespace", "pbft"]);
    assert_eq!(o.status.code(), Some(exit::CONFIG));
    assert!(
        stderr(&o).contains("already holds manifests"),
        "{}",
        stderr(&o)
    );
}

fn lay_out(from: &Path, host: &str, net: &Path, replica: usize) {
    let d = from.join(host);
    std::fs::create_dir_all(&d).unwrap();
    let home = net.join(format!("replica-{replica}"));
    std::fs::copy(home.join("config.toml"), d.join("config.toml")).unwrap();
    std::fs::copy(home.join("node.key"), d.join("node.key")).unwrap();
    std::fs::copy(net.join("genesis.json"), from.join("genesis.json")).unwrap();
}

#[test]
fn start_provision_from_refuses_another_replicas_volume_and_an_unknown_host() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let o = run(&[
        "testnet",
        "--out",
        &net.display().to_string(),
        "--base-port",
        "31600",
    ]);
    assert_eq!(o.status.code(), Some(exit::OK), "{}", stderr(&o));
    let host = pbft_ledger::operator::kubernetes::hostname().unwrap();
    let host = host.split('.').next().unwrap().to_string();
    let from = dir.path().join("etc");
    let home = dir.path().join("home");
    // No directory for this host: exit 3, nothing started.
    let o = run(&[
        "start",
        "--home",
        &home.display().to_string(),
        "--provision-from",
        &from.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(exit::CONFIG), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("no directory for hostname '{host}")),
        "{}",
        stderr(&o)
    );
    // The home (a volume) holds replica 2's key; this host's files are replica 1's.
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(net.join("replica-2/node.key"), home.join("node.key")).unwrap();
    lay_out(&from, &host, &net, 1);
    let o = run(&[
        "start",
        "--home",
        &home.display().to_string(),
        "--provision-from",
        &from.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(exit::CONFIG), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another replica's volume"),
        "{}",
        stderr(&o)
    );
    let key = std::fs::read_to_string(home.join("node.key")).unwrap();
    assert_eq!(
        key,
        std::fs::read_to_string(net.join("replica-2/node.key")).unwrap()
    );
}
