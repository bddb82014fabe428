//! The replica's view record: the last view it entered, kept apart from
//! its store, so that a store that was wiped, replaced or put back from a
//! backup is recognised as lost (see [`ViewRecord`]).

use crate::storage::StorageError;
use crate::types::View;

/// The last view a replica entered, kept apart from its store (the runtime:
/// a small file in the replica's home, outside the data directory).
///
/// A replica's store holds the record of its votes; a wiped data directory,
/// a replaced volume or a backup put back loses some of it, and the replica
/// could then vote again, differently, where it voted before (issue 17,
/// defect 12). The view record survives that: a store that is empty while a
/// record exists, or whose view is behind the record, is known to be lost,
/// and the replica sends no PRE-PREPARE, PREPARE or COMMIT up to the
/// recorded view. A first start at genesis has no record. A view is recorded
/// before any vote of it leaves.
pub trait ViewRecord: Send {
    /// The highest view recorded, if any.
    fn last(&self) -> Option<View>;
    /// Records `view` durably if it is above the last one.
    fn record(&mut self, view: View) -> Result<(), StorageError>;
}

/// A [`ViewRecord`] in memory, shared by its clones (the simulator keeps
/// one per replica across restarts and wipes; `Node::open` uses a fresh
/// one, which never recognises a lost store).
#[derive(Clone, Default, Debug)]
pub struct MemoryViewRecord(std::sync::Arc<std::sync::Mutex<Option<View>>>);

impl ViewRecord for MemoryViewRecord {
    fn last(&self) -> Option<View> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn record(&mut self, view: View) -> Result<(), StorageError> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *v = (*v).max(Some(view));
        Ok(())
    }
}

/// A [`ViewRecord`] in a file: the view in decimal, replaced atomically
/// (written to a temporary file, synced, renamed, the directory synced).
pub struct FileViewRecord {
    path: std::path::PathBuf,
    last: Option<View>,
}

impl FileViewRecord {
    /// Reads the record at `path` (none if the file does not exist).
    pub fn open(path: std::path::PathBuf) -> Result<FileViewRecord, StorageError> {
        let last = match std::fs::read_to_string(&path) {
            Ok(text) => Some(View(text.trim().parse().map_err(|_| {
                StorageError::Corrupt(format!(
                    "view record {} does not hold a view number",
                    path.display()
                ))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StorageError::Io(format!(
                    "cannot read view record {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(FileViewRecord { path, last })
    }
}

impl ViewRecord for FileViewRecord {
    fn last(&self) -> Option<View> {
        self.last
    }
    fn record(&mut self, view: View) -> Result<(), StorageError> {
        use std::io::Write;
        if self.last.is_some_and(|l| l >= view) {
            return Ok(());
        }
        let io = |e: std::io::Error| {
            StorageError::Io(format!("view record {}: {e}", self.path.display()))
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        writeln!(f, "{}", view.0).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        self.last = Some(view);
        Ok(())
    }
}
