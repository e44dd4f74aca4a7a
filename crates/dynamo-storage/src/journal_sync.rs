//! Fsyncing fjall's journal without holding fjall's journal mutex.
//!
//! fjall's own `persist(SyncAll)` flushes the journal's buffer and fsyncs
//! the file while holding the journal mutex, and every insert takes that
//! mutex: for the whole fsync, every writer of the node waits, on its own
//! thread (a tokio worker, with every task queued behind it). Group commit
//! and the background sync fsync ten times a second or more, so writers
//! stalled for one disk flush at a time, many times a second, and far
//! longer while a memtable flush kept the disk busy.
//!
//! Here the buffer is flushed to the OS under the mutex (`persist(Buffer)`,
//! one `write(2)` at most; usually nothing, since every insert already
//! flushes its own bytes), and the fsync is made on a descriptor of our own
//! for the active journal file, with the mutex free. fsync is per file, not
//! per descriptor: it writes every dirty page of the file, whoever wrote it.
//!
//! Why the active journal is enough. The journal files are `<id>.jnl` in
//! the database directory; writes go to the highest id. A write that
//! returned before this sync started is in the file that was active then,
//! `J`. If `J` is still the highest id when we look, we fsync it. If a
//! newer file exists, fjall rotated away from `J` meanwhile, and rotation
//! fsyncs `J` (under the mutex) before it creates the next file. If `J` is
//! gone, fjall deleted it after flushing its memtable to a synced table.
//! The tests pin the file layout this relies on, so a fjall upgrade that
//! changes it fails them instead of silently syncing the wrong file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of fjall's journal files.
const JOURNAL_SUFFIX: &str = ".jnl";

/// How many times a journal that vanished between listing and opening is
/// looked for again (each time means a rotation and a deletion happened in
/// between, which takes a whole memtable flush).
const VANISHED_RETRIES: usize = 3;

/// The journal file with the highest id in `dir`, if any.
pub fn active_journal(dir: &Path) -> io::Result<Option<PathBuf>> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|name| name.strip_suffix(JOURNAL_SUFFIX)).and_then(|id| id.parse().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(best_id, _)| id > *best_id) {
            best = Some((id, entry.path()));
        }
    }
    Ok(best.map(|(_, path)| path))
}

/// Fsyncs the active journal in `dir` (see the module documentation).
/// `Ok(false)` when there is no journal file to sync.
pub fn sync_active_journal(dir: &Path) -> io::Result<bool> {
    for _ in 0..VANISHED_RETRIES {
        let Some(path) = active_journal(dir)? else {
            return Ok(false);
        };
        match File::open(&path) {
            Ok(file) => {
                file.sync_all()?;
                return Ok(true);
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other(format!("the active journal in {} kept vanishing while it was being synced", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_numbered_journal_is_the_active_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["2.jnl", "10.jnl", "9.jnl", "lock", "version", "11.tmp"] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::create_dir(dir.path().join("keyspaces")).expect("mkdir");
        assert_eq!(active_journal(dir.path()).expect("list"), Some(dir.path().join("10.jnl")));
        assert!(sync_active_journal(dir.path()).expect("sync"));
    }

    #[test]
    fn no_journal_is_nothing_to_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(active_journal(dir.path()).expect("list"), None);
        assert!(!sync_active_journal(dir.path()).expect("sync"));
    }
}
