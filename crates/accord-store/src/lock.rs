//! The data folder's lock: one live `Replica` per folder, across processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::StoreError;

/// File name of the lock inside the data folder.
pub(crate) const LOCK_FILE: &str = "accord.lock";

/// An exclusive advisory lock on `accord.lock`, held until dropped.
///
/// redb locks its own file too, but that lock says nothing about *who* holds
/// it; ours records the holder's pid so the error can name the process, and
/// it also covers the key file and the moments before the database is open.
#[derive(Debug)]
pub(crate) struct FolderLock {
    // Kept open only so the OS lock lives as long as this value.
    _file: File,
}

impl FolderLock {
    /// Takes the lock without waiting; `InUse` if someone else has it.
    pub(crate) fn acquire(dir: &Path) -> Result<FolderLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::InUse {
                    dir: dir.to_owned(),
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
        }
        write_pid(&mut file).map_err(StoreError::io(&path))?;
        Ok(FolderLock { _file: file })
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

/// The holder's pid, if the file holds one; the lock file is only a hint for people.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_our_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = FolderLock::acquire(dir.path()).unwrap();
        match FolderLock::acquire(dir.path()) {
            Err(StoreError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        assert!(FolderLock::acquire(dir.path()).is_ok());
    }
}
