//! Allocations persisted in the state dir, so a daemon restart keeps every
//! running pod's token valid. One JSON file, replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory): a crash leaves either
//! the old or the new list, never half of one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::devices::Resource;

/// One container's allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The SHA-256 of the container's token ([`crate::node::token::key`]):
    /// the token itself is never stored.
    #[serde(rename = "token_sha256", default)]
    pub(crate) key: String,
    /// A token in clear, as files written before keys were stored hold it;
    /// turned into `key` when loaded and never written again.
    #[serde(default, skip_serializing)]
    pub(crate) token: Option<String>,
    pub(crate) resource: Resource,
    /// The devices kubelet assigned, as it will list them in PodResources.
    pub(crate) device_ids: Vec<String>,
    /// For vram: the GPU and the MiB carved out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) vram: Option<VramRecord>,
    /// Unix milliseconds, for operators reading the file.
    pub(crate) allocated_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VramRecord {
    pub(crate) gpu_uuid: String,
    pub(crate) mib: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    allocations: Vec<Record>,
}

const VERSION: u32 = 1;

/// Every pod's token is in the file: the daemon's user only.
pub(crate) const FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid allocations file ({source}); move it away to start with no allocations"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The allocations file (`<state>/allocations.json`).
#[derive(Debug, Clone)]
pub(crate) struct Store {
    path: PathBuf,
}

impl Store {
    pub(crate) fn new(state_dir: &Path) -> Store {
        Store {
            path: state_dir.join("allocations.json"),
        }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The saved allocations; none when the file does not exist yet.
    pub(crate) fn load(&self) -> Result<Vec<Record>, Error> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    op: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        // A file from before modes were enforced (0644) is closed now, not
        // at the next save.
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(FILE_MODE)).map_err(
            |source| Error::Io {
                op: "set the mode of",
                path: self.path.clone(),
                source,
            },
        )?;
        let file: File = serde_json::from_slice(&text).map_err(|source| Error::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        let mut records = file.allocations;
        let mut upgraded = false;
        for r in &mut records {
            if let Some(token) = r.token.take() {
                r.key = crate::node::token::key(&token);
                upgraded = true;
            }
        }
        // A file that held tokens in clear is rewritten at once with keys only.
        if upgraded {
            self.save(&records)?;
        }
        Ok(records)
    }

    /// Replaces the saved list with `records`, atomically.
    pub(crate) fn save(&self, records: &[Record]) -> Result<(), Error> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { op, path, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&File {
            version: VERSION,
            allocations: records.to_vec(),
        })
        .expect("records serialize");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        // `mode` applies to a new file only: a temporary left by a crash
        // keeps whatever mode it had, so set it on the open file too.
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(io("set the mode of", &tmp))?;
        f.write_all(&body).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io("rename into", &self.path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> Record {
        Record {
            key: key.into(),
            token: None,
            resource: Resource::Vram,
            device_ids: vec!["GPU-a-vram-0".into(), "GPU-a-vram-1".into()],
            vram: Some(VramRecord {
                gpu_uuid: "GPU-a".into(),
                mib: 2048,
            }),
            allocated_at_ms: 1,
        }
    }

    #[test]
    fn saved_allocations_load_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load().unwrap(), vec![]);
        store.save(&[record("t1"), record("t2")]).unwrap();
        assert_eq!(store.load().unwrap(), vec![record("t1"), record("t2")]);
        store.save(&[record("t2")]).unwrap();
        assert_eq!(store.load().unwrap(), vec![record("t2")]);
        assert!(
            !dir.path().join("allocations.json.tmp").exists(),
            "no temporary left behind"
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_file_is_the_daemons_alone_whatever_was_there_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        // A temporary left world-readable by a crash, and an old 0644 file.
        let tmp = dir.path().join("allocations.json.tmp");
        std::fs::write(&tmp, "stale").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        store.save(&[record("t1")]).unwrap();
        assert_eq!(mode(store.path()), 0o600);

        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(store.load().unwrap(), vec![record("t1")]);
        assert_eq!(mode(store.path()), 0o600, "tightened when loaded");
    }

    #[test]
    fn tokens_in_clear_from_an_older_file_become_keys_and_leave_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let token = "00112233445566778899aabbccddeeff";
        std::fs::write(
            store.path(),
            format!(
                r#"{{"version":1,"allocations":[{{"token":"{token}","resource":"slot","device_ids":["GPU-a-slot-0"],"allocated_at_ms":1}}]}}"#
            ),
        )
        .unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded[0].key, crate::node::token::key(token));
        assert_eq!(loaded[0].token, None);
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(token), "rewritten without the token: {text}");
        assert_eq!(store.load().unwrap(), loaded);
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(store.path(), "{ not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(
            e.contains("allocations.json") && e.contains("move it away"),
            "{e}"
        );
    }
}
