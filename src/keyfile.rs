//! Key files: the hex of an ed25519 key's 32-byte seed and a newline, readable
//! by the owner only (mode 0600). Replicas and clients use the same format.
//!
//! A key file is never overwritten: generating into an existing path fails,
//! so a mistyped command cannot destroy a replica's identity or an account.

use crate::crypto::KeyPair;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error("key file {path} does not hold a key (expected 64 hex digits)")]
    Malformed { path: String },
    /// The file already exists; it is never overwritten.
    #[error("key file {path} already exists; refusing to overwrite it")]
    Exists { path: String },
    /// The file could not be written.
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Reads a key file.
pub fn read(path: &Path) -> Result<KeyPair, KeyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| KeyFileError::Malformed {
        path: shown.clone(),
    })?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyFileError::Malformed { path: shown })?;
    Ok(KeyPair::from_seed(seed))
}

/// Writes `key` to a new file with mode 0600, creating parent directories.
pub fn write(path: &Path, key: &KeyPair) -> Result<(), KeyFileError> {
    let shown = path.display().to_string();
    let werr = |source| KeyFileError::Write {
        path: shown.clone(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(werr)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: shown.clone(),
                }
            } else {
                werr(source)
            }
        })?;
    // The umask can only remove bits; make sure nothing else was left.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(werr)?;
    file.write_all(format!("{}\n", hex::encode(key.seed())).as_bytes())
        .map_err(werr)?;
    file.sync_all().map_err(werr)?;
    Ok(())
}

/// Generates a fresh key and writes it to a new file.
pub fn generate(path: &Path) -> Result<KeyPair, KeyFileError> {
    let key = KeyPair::generate();
    write(path, &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mode_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/k.key");
        let key = generate(&path).unwrap();
        assert_eq!(read(&path).unwrap().public(), key.public());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(generate(&path), Err(KeyFileError::Exists { .. })));
        std::fs::write(dir.path().join("bad"), "xyz").unwrap();
        assert!(matches!(
            read(&dir.path().join("bad")),
            Err(KeyFileError::Malformed { .. })
        ));
    }
}
