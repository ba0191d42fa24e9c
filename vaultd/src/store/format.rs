//! The data directory's format version. Stored records and Raft log entries are postcard,
//! which is not self-describing: a vaultd reading a directory written by a build with
//! other record layouts would fail record by record, at request time. A `FORMAT` file
//! written with the directory makes such a start fail at once, with a clear message.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::StoreError;

/// Bumped whenever a stored record, a command or the snapshot layout changes shape.
/// 2: subjects carry an expiration, access tokens a subject; sessions, shares, consent,
/// requests and retention runs exist.
/// 3: the Raft log lives in segment files (`raft-log/`), no longer in sled.
/// 4: audit events link to their subject's previous event; one audit head per subject
/// replaces the index entry per event.
/// 5: snapshot files end with a trailer (`SRSNAP02`) and are streamed, not held in memory.
/// 6: audit events live in the audit trail's files (`audit/`), not in sled; snapshots name
/// their cut of the trail (`SRSNAP03`).
/// 7: a shared record may share fields of one of its subject's sessions; agreements to an
/// email or phone that names no subject yet are kept, with the identifier sealed beside
/// them (new state-tree records and consent commands).
/// 8: the erasure ledger (new state-tree records), retention's minimisation as a command
/// of its own, backup and ledger audit operations. Only additions: a format-7 directory
/// is read as it is and marked 8.
pub const CURRENT: u32 = 8;

/// Older formats this build reads without changing a byte of them (their records and
/// commands are a subset of this format's): opening marks them current.
const READS_AS_IS: &[u32] = &[7];

const FILE: &str = "FORMAT";
const PREFIX: &str = "strongroom-data ";

/// Accepts a directory of this format, marks a new one as such, and refuses anything
/// else. `database` is the sled directory inside `dir`.
pub fn check_or_create(dir: &Path, database: &Path) -> Result<(), StoreError> {
    let marker = dir.join(FILE);
    match fs::read_to_string(&marker) {
        Ok(text) => {
            let found = text.trim().strip_prefix(PREFIX).and_then(|n| n.parse().ok());
            match found {
                Some(CURRENT) => Ok(()),
                Some(older) if READS_AS_IS.contains(&older) => write_marker(dir),
                found => Err(StoreError::Format { found, expected: CURRENT }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if database.exists() {
                // Written before the marker existed (format 1), or by something else.
                return Err(StoreError::Format { found: None, expected: CURRENT });
            }
            fs::create_dir_all(dir)?;
            write_marker(dir)
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks `dir` as of the current format, durably.
fn write_marker(dir: &Path) -> Result<(), StoreError> {
    let temporary = dir.join(format!("{FILE}.tmp"));
    let mut file = fs::File::create(&temporary)?;
    writeln!(file, "{PREFIX}{CURRENT}")?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(FILE))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_marked_and_another_format_refused() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("vault.sled");
        check_or_create(dir.path(), &database).unwrap();
        std::fs::create_dir(&database).unwrap();
        check_or_create(dir.path(), &database).unwrap();

        std::fs::write(dir.path().join(FILE), "strongroom-data 1\n").unwrap();
        let error = check_or_create(dir.path(), &database).unwrap_err();
        assert!(matches!(error, StoreError::Format { found: Some(1), expected: CURRENT }), "{error}");

        // Format 7 is read as it is, and marked current.
        std::fs::write(dir.path().join(FILE), "strongroom-data 7\n").unwrap();
        check_or_create(dir.path(), &database).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(FILE)).unwrap(), format!("strongroom-data {CURRENT}\n"));

        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let error = check_or_create(dir.path(), &database).unwrap_err();
        assert!(matches!(error, StoreError::Format { found: None, .. }), "a database without a marker is older");
        assert!(error.to_string().contains("format"), "{error}");
    }
}
