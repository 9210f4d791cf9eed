//! Lease ids that never repeat across restarts (issue 16, item 3).
//!
//! Leases live in memory: after a crash they are gone, and ids restarting
//! at 1 let a holder from before the crash `Release(1)` someone else's new
//! lease 1. Each start therefore takes the next *epoch* from
//! `<state>/lease-epoch` (written, synced and renamed into place before the
//! sockets serve) and hands out ids `epoch << 40 | n`: a run's ids are its
//! own, and an id from an earlier run is NOT_FOUND, which tells its holder
//! to admit again. 2^40 leases per run; 2^24 - 1 restarts before epochs
//! wrap around (at 1).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file, in the state directory.
pub const FILE: &str = "lease-epoch";
/// Bits of a lease id below the epoch.
pub const COUNTER_BITS: u32 = 40;
const MAX_EPOCH: u64 = (1 << (64 - COUNTER_BITS)) - 1;

#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} does not hold a lease epoch (a number from 1 to {MAX_EPOCH}): {text:?}; \
         remove it only if no pod from before this restart still holds a lease",
        path.display()
    )]
    Corrupt { path: PathBuf, text: String },
}

/// The first lease id of a run in `epoch`.
pub fn first_lease_id(epoch: u64) -> u64 {
    (epoch << COUNTER_BITS) | 1
}

/// The epoch of a lease id.
pub fn epoch_of(lease_id: u64) -> u64 {
    lease_id >> COUNTER_BITS
}

/// Takes the next epoch: reads the last one (none: 0), persists the next.
pub fn advance(state_dir: &Path) -> Result<u64, EpochError> {
    let path = state_dir.join(FILE);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| EpochError::Io { op, path, source }
    };
    let last = match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if n <= MAX_EPOCH => n,
            _ => {
                return Err(EpochError::Corrupt {
                    path,
                    text: text.chars().take(40).collect(),
                });
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io("read", &path)(e)),
    };
    let next = if last >= MAX_EPOCH { 1 } else { last + 1 };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("set the mode of", &tmp))?;
    writeln!(f, "{next}").map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io("rename into", &path))?;
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", state_dir))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_takes_the_next_epoch_and_its_ids_are_its_own() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(advance(dir.path()).unwrap(), 1);
        assert_eq!(advance(dir.path()).unwrap(), 2);
        assert_eq!(advance(dir.path()).unwrap(), 3);
        assert!(first_lease_id(3) > first_lease_id(2) + (1 << 39));
        assert_eq!(epoch_of(first_lease_id(3) + 12345), 3);
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_file_stops_the_start_and_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "banana").unwrap();
        let e = advance(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("lease-epoch") && e.contains("remove it only if"),
            "{e}"
        );
    }

    #[test]
    fn epochs_wrap_around_at_the_top_to_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), format!("{MAX_EPOCH}\n")).unwrap();
        assert_eq!(advance(dir.path()).unwrap(), 1);
        assert!(first_lease_id(MAX_EPOCH).checked_add(1 << 39).is_some());
    }
}
