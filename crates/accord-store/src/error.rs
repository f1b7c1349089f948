//! The one error type of this crate, worded for the person running `accord`.

use std::path::{Path, PathBuf};

/// Everything that can go wrong with a replica.
///
/// Every message says what happened *and* what the person can do about it,
/// because these errors end up printed by the CLI, not handled by code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The folder holds no replica (or does not exist).
    #[error(
        "no Accord replica in {}: run `accord init --org NAME` first (or pass --data)",
        dir.display()
    )]
    NotInitialised {
        /// The data folder that was looked in.
        dir: PathBuf,
    },

    /// `create` found a replica or a key file already there; it never overwrites either.
    #[error(
        "an Accord replica (or its key file) already exists in {}: use it, or choose another folder with --data",
        dir.display()
    )]
    AlreadyInitialised {
        /// The data folder that already holds a replica.
        dir: PathBuf,
    },

    /// Another `Replica` (in this or another process) holds the folder's lock.
    #[error("the replica in {} is in use by {} (is `accord serve` running?)", dir.display(), holder(*pid))]
    InUse {
        /// The data folder that is locked.
        dir: PathBuf,
        /// The process id written into the lock file by the holder, if readable.
        pid: Option<u32>,
    },

    /// `replica.redb` exists but is not a redb database at all.
    #[error(
        "{} is not an Accord replica (it is not a redb database); it was left untouched: move it away or pass another --data folder",
        path.display()
    )]
    NotAReplica {
        /// The file that was refused.
        path: PathBuf,
    },

    /// The file is damaged: redb found corruption, a table or record is malformed, or a key file is unreadable.
    #[error("{} is damaged ({detail}): {}", path.display(), what_to_do(path))]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What exactly is wrong, for a bug report.
        detail: String,
    },

    /// The replica was written by a newer Accord; it is left untouched.
    #[error(
        "{} uses replica schema version {found}, but this Accord supports up to {supported}: upgrade Accord (the file was not modified)",
        path.display()
    )]
    TooNew {
        /// The replica file.
        path: PathBuf,
        /// The schema version found in the file.
        found: u32,
        /// The newest schema version this build understands.
        supported: u32,
    },

    /// The key file does not belong to this replica.
    #[error(
        "the key file {} belongs to another organisation than this replica: restore the original org.key",
        path.display()
    )]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
    },

    /// The organisation key file is missing.
    #[error(
        "the organisation key file {} is missing: restore it from your backup (without it this replica cannot act for the organisation)",
        path.display()
    )]
    MissingKey {
        /// Where the key file was expected.
        path: PathBuf,
    },

    /// Reading or writing a file failed at the operating-system level.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Any other error reported by the database engine.
    #[error("database error: {0}")]
    Database(String),

    /// A write transaction could not be committed; nothing of it (or, in a commit queue, after it) is durable.
    #[error(
        "could not save changes to disk: {0}; the changes were not saved, check free disk space and permissions"
    )]
    CommitFailed(String),

    /// A batch referred to a document that the replica does not hold; the whole batch was rejected.
    #[error(
        "document {id} is not in this replica; the whole batch was rejected (this is a bug in the caller)"
    )]
    UnknownDocument {
        /// The document id, as hex.
        id: String,
    },

    /// A value exceeds the size this crate stores; nothing was added to the batch.
    #[error(
        "a {what} of {size} bytes is larger than the {limit} bytes a replica stores; it was not saved (this is a bug in the caller)"
    )]
    TooLarge {
        /// What was too large (e.g. "sync state").
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The largest size accepted.
        limit: usize,
    },

    /// The commit queue was used after it had been closed.
    #[error("the commit queue is closed; this is a bug in the caller")]
    QueueClosed,
}

/// A damaged replica is rebuilt by `accord repair`; a damaged key file
/// only comes back from a backup (repair never touches the key).
fn what_to_do(path: &Path) -> &'static str {
    if path.file_name().and_then(|n| n.to_str()) == Some(crate::key_file::KEY_FILE) {
        "restore it from your backup"
    } else {
        "run `accord repair` to rebuild the replica from what is intact and from your partners or relay"
    }
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

impl StoreError {
    /// An `Io` error for `path`, for use with `map_err`.
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// `from_redb` for `path`, for use with `map_err`.
    pub(crate) fn redb<E: Into<redb::Error>>(path: &Path) -> impl FnOnce(E) -> StoreError + '_ {
        move |err| StoreError::from_redb(path, err)
    }

    /// A `Corrupt` error for `path`.
    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: path.to_owned(),
            detail: detail.into(),
        }
    }

    /// Maps any redb error to the matching variant: corruption and IO keep their meaning,
    /// everything else becomes `Database`.
    pub(crate) fn from_redb(path: &Path, err: impl Into<redb::Error>) -> StoreError {
        match err.into() {
            redb::Error::Corrupted(detail) => StoreError::corrupt(path, detail),
            redb::Error::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
                StoreError::corrupt(path, source.to_string())
            }
            redb::Error::Io(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                StoreError::corrupt(path, format!("the file is truncated ({source})"))
            }
            redb::Error::Io(source) => StoreError::Io {
                path: path.to_owned(),
                source,
            },
            redb::Error::UpgradeRequired(version) => StoreError::corrupt(
                path,
                format!("redb file format {version} is not supported by this build"),
            ),
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// Runs `f`, turning a panic inside the database engine into `Corrupt`.
///
/// redb may panic on a file damaged outside redb (its docs say so); a damaged
/// file must produce an error the person can act on, never a crash.
pub(crate) fn no_panic<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => Err(StoreError::corrupt(path, panic_message(&*panic))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("the database engine failed while reading it: {text}")
}
