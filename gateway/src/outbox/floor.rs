//! The sequence floor: a small file beside the outbox's store (`<dir>.seq-floor`) holding a
//! number above every sequence number the outbox has handed out, so that numbering never goes
//! back when the store itself is lost (set aside as damaged, or removed by an operator).
//!
//! The outbox reserves numbers in blocks of [`BLOCK`]: before it hands out a number at or
//! above the floor it writes a new floor one block higher, so the file is written once per
//! [`BLOCK`] records. The file is replaced atomically (written beside, synced, renamed, the
//! directory synced), so a crash leaves the old floor or the new one, never a torn one. A
//! store that has numbered records keeps its own exact counter and the floor is not needed;
//! a store that never numbered anything starts at the floor (a gap of at most one block).
//!
//! Format: one line, `citygate-outbox-seq-floor 1 <n>`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Numbers reserved per write of the floor file.
pub const BLOCK: u64 = 1024;
const MAGIC: &str = "citygate-outbox-seq-floor 1";

/// Where the floor of the store in `dir` is kept: beside it, so that it survives the store
/// being set aside.
pub fn path_for(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "outbox".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.seq-floor"))
}

/// Why the floor file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("outbox sequence floor {path}: cannot be read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("outbox sequence floor {path}: line 1: `{found}` is not `{MAGIC} <number>`; it keeps sequence numbers from going back, so restore it or (if this gateway's platform holds no records of it) remove it")]
    Garbled { path: PathBuf, found: String },
    #[error("outbox sequence floor {path}: cannot be written: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Parses the file's text.
fn parse(text: &str) -> Option<u64> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    line.strip_prefix(MAGIC)?.strip_prefix(' ')?.parse().ok()
}

/// The floor stored at `path`; `None` when there is no file.
pub fn read(path: &Path) -> Result<Option<u64>, FloorError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FloorError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse(&text).map(Some).ok_or_else(|| FloorError::Garbled {
        path: path.to_path_buf(),
        found: text.lines().next().unwrap_or("").chars().take(80).collect(),
    })
}

/// Replaces the floor at `path` with `n`, atomically and durably.
pub fn write(path: &Path, n: u64) -> Result<(), FloorError> {
    let err = |source| FloorError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("seq-floor.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(format!("{MAGIC} {n}\n").as_bytes())
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_a_garbled_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("outbox");
        let p = path_for(&store);
        assert_eq!(p, dir.path().join("outbox.seq-floor"));
        assert_eq!(read(&p).unwrap(), None);
        write(&p, 5000).unwrap();
        assert_eq!(read(&p).unwrap(), Some(5000));
        write(&p, 7).unwrap();
        assert_eq!(read(&p).unwrap(), Some(7));
        std::fs::write(&p, "seq=12\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("line 1") && e.contains("seq=12"),
            "{e}"
        );
        assert_eq!(parse("citygate-outbox-seq-floor 1 -3"), None);
    }
}
