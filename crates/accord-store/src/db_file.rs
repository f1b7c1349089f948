//! Opening `replica.redb` safely: every check that can refuse a file runs
//! before anything writes to it, and a damaged file yields an error, never a panic.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use redb::backends::InMemoryBackend;
use redb::{Builder, Database, DatabaseError, ReadableDatabase, StorageBackend, TableError};

use crate::error::{StoreError, no_panic};
use crate::tables::{
    self, META, META_CREATED_AT, META_ORG_KEY, META_ORG_NAME, META_SCHEMA_VERSION,
    OLDEST_SCHEMA_VERSION, SCHEMA_VERSION,
};

/// File name of the database inside the data folder.
pub(crate) const DB_FILE: &str = "replica.redb";

/// The first bytes of every redb file (redb's `MAGICNUMBER`, which it does not export).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Page cache limit; the default (1 GiB) is far more than a replica needs.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The open database. Closing it (on drop) commits redb's allocator state,
/// which can panic on a file damaged outside redb since it was opened; the
/// panic is caught and logged here (the file is then recovered by the next
/// open, as after a crash), so dropping a replica never panics.
pub(crate) struct Db {
    db: Option<Database>,
    path: PathBuf,
    /// Leak the handle on drop instead of closing it (see [`Db::in_memory_copy`]).
    leak_on_drop: bool,
}

impl Db {
    pub(crate) fn new(db: Database, path: &Path) -> Db {
        Db {
            db: Some(db),
            path: path.to_owned(),
            leak_on_drop: false,
        }
    }

    /// Opens a copy of a replica file's `bytes` held in memory, so that
    /// nothing done to it (redb's recovery, an integrity check's repair)
    /// reaches the file on disk. `check` verifies every page on open.
    ///
    /// The handle is leaked when dropped, never closed: closing commits
    /// redb's allocator state, and on a file damaged outside redb that
    /// commit can panic and panic again while unwinding, which aborts the
    /// process (`crates/accord-fuzz/fuzz/regressions/replica_file/abort-on-close*`).
    /// A copy in memory has nothing to flush, so leaking it loses nothing
    /// but its memory, once per `accord repair`.
    pub(crate) fn in_memory_copy(bytes: &[u8], path: &Path, check: bool) -> Result<Db, StoreError> {
        no_panic(path, || {
            let backend = InMemoryBackend::new();
            backend
                .set_len(bytes.len() as u64)
                .and_then(|()| backend.write(0, bytes))
                .map_err(|err| StoreError::Database(format!("{err:?}")))?;
            let db = Builder::new()
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(check)
                .create_with_backend(backend)
                .map_err(|err| map_open_error(path, err))?;
            Ok(Db {
                db: Some(db),
                path: path.to_owned(),
                leak_on_drop: true,
            })
        })
    }
}

impl Deref for Db {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.db
            .as_ref()
            .expect("the database is open until dropped")
    }
}

impl DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Database {
        self.db
            .as_mut()
            .expect("the database is open until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some(db) = self.db.take() else { return };
        if self.leak_on_drop {
            std::mem::forget(db);
            return;
        }
        let closed = no_panic(&self.path, || {
            db.close()
                .map_err(|err| StoreError::from_redb(&self.path, err))
        });
        if let Err(err) = closed {
            tracing::warn!(path = %self.path.display(), %err, "the replica did not close cleanly");
        }
    }
}

/// What `meta` says about a replica.
#[derive(Debug)]
pub(crate) struct Meta {
    /// The schema version the file says it follows.
    pub schema: u32,
    pub org_name: String,
    pub created_at: i64,
    pub org_key: [u8; 32],
}

/// Whether `head` starts like a redb file.
pub(crate) fn has_magic(head: &[u8]) -> bool {
    head.starts_with(&REDB_MAGIC)
}

/// Refuses a file that is not a redb database, reading only its first bytes.
pub(crate) fn check_magic(path: &Path) -> Result<(), StoreError> {
    let file = File::open(path).map_err(StoreError::io(path))?;
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    file.take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(StoreError::io(path))?;
    if head.is_empty() {
        return Err(StoreError::corrupt(path, "the file is empty"));
    }
    if head != REDB_MAGIC {
        return Err(StoreError::NotAReplica {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Reads `meta` through a read-only handle, so a file of a newer schema (or
/// with no Accord meta at all) is refused before anything writes to it.
///
/// Returns `None` when redb says the file needs crash recovery, which a
/// read-only handle cannot do; the caller then opens it for writing (redb's
/// recovery touches only redb's own bookkeeping) and checks `meta` after.
pub(crate) fn precheck(path: &Path) -> Result<Option<Meta>, StoreError> {
    no_panic(path, || {
        let db = match Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
        {
            Ok(db) => db,
            Err(DatabaseError::RepairAborted) => {
                tracing::warn!(path = %path.display(), "the replica was not closed cleanly; recovering it");
                return Ok(None);
            }
            Err(err) => return Err(map_open_error(path, err)),
        };
        read_meta(&db, path).map(Some)
    })
}

/// Opens the database for writing.
///
/// redb recovers on its own from a crash or power loss: when the file was
/// not shut down cleanly it verifies the checksum of every page of the
/// committed trees, falls back to the previous commit if the last one is
/// torn, and rebuilds its allocator state. A cleanly closed file is trusted,
/// which keeps an open from reading (and committing to) the whole file.
/// Damage made outside redb to a cleanly closed file is caught later: panics
/// inside redb become `Corrupt` (`no_panic`), and Automerge checks every
/// change and document chunk it loads. [`verify`] runs the full check on demand.
pub(crate) fn open_writable(path: &Path) -> Result<Db, StoreError> {
    no_panic(path, || {
        Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .map(|db| Db::new(db, path))
            .map_err(|err| map_open_error(path, err))
    })
}

/// Verifies every page's checksum and repairs what redb can (see
/// `Database::check_integrity`); `Ok(false)` means it found and repaired damage.
pub(crate) fn verify(db: &mut Database, path: &Path) -> Result<bool, StoreError> {
    no_panic(path, || {
        db.check_integrity()
            .map_err(|err| map_open_error(path, err))
    })
}

/// Creates a brand-new database file; fails if any file is already there.
pub(crate) fn create_new(path: &Path) -> Result<Db, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| match source.kind() {
            ErrorKind::AlreadyExists => StoreError::AlreadyInitialised {
                dir: path.parent().unwrap_or(path).to_owned(),
            },
            _ => StoreError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    redb::backends::FileBackend::new(file)
        .and_then(|backend| {
            Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create_with_backend(backend)
        })
        .map(|db| Db::new(db, path))
        .map_err(|err| {
            // The file is ours (create_new made it); leave nothing half-made behind.
            let _ = std::fs::remove_file(path);
            map_open_error(path, err)
        })
}

fn map_open_error(path: &Path, err: DatabaseError) -> StoreError {
    match err {
        DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
            dir: path.parent().unwrap_or(path).to_owned(),
            pid: None,
        },
        other => StoreError::from_redb(path, other),
    }
}

/// Reads and validates `meta`; the schema version is checked first because a
/// newer schema may have changed everything else.
pub(crate) fn read_meta(db: &impl ReadableDatabase, path: &Path) -> Result<Meta, StoreError> {
    let txn = db.begin_read().map_err(StoreError::redb(path))?;
    let meta = match txn.open_table(META) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(StoreError::corrupt(
                path,
                "it is a redb database without Accord's meta table",
            ));
        }
        Err(err) => return Err(StoreError::from_redb(path, err)),
    };
    let get = |key: &str| -> Result<Vec<u8>, StoreError> {
        let value = meta.get(key).map_err(StoreError::redb(path))?;
        value
            .map(|v| v.value().to_vec())
            .ok_or_else(|| StoreError::corrupt(path, format!("meta has no {key}")))
    };
    let schema = check_schema(path, &get(META_SCHEMA_VERSION)?)?;
    Ok(Meta {
        schema,
        org_name: String::from_utf8(get(META_ORG_NAME)?)
            .map_err(|_| StoreError::corrupt(path, "the organisation name is not UTF-8"))?,
        created_at: i64::from_le_bytes(fixed(path, META_CREATED_AT, &get(META_CREATED_AT)?)?),
        org_key: fixed(path, META_ORG_KEY, &get(META_ORG_KEY)?)?,
    })
}

fn check_schema(path: &Path, bytes: &[u8]) -> Result<u32, StoreError> {
    match tables::decode_u32(bytes) {
        Some(found @ OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION) => Ok(found),
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
        Some(found) => Err(StoreError::corrupt(
            path,
            format!("schema version {found} is not a valid version"),
        )),
        None => Err(StoreError::corrupt(path, "the schema version is malformed")),
    }
}

fn fixed<const N: usize>(path: &Path, key: &str, bytes: &[u8]) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(path, format!("meta {key} has the wrong length")))
}

/// Writes `meta` for a new replica: the facts `read_meta` later requires.
pub(crate) fn write_meta(db: &Database, path: &Path, meta: &Meta) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(StoreError::redb(path))?;
    {
        let mut table = txn.open_table(META).map_err(StoreError::redb(path))?;
        let entries: [(&str, &[u8]); 4] = [
            (META_SCHEMA_VERSION, &SCHEMA_VERSION.to_le_bytes()),
            (META_ORG_NAME, meta.org_name.as_bytes()),
            (META_CREATED_AT, &meta.created_at.to_le_bytes()),
            (META_ORG_KEY, &meta.org_key),
        ];
        for (key, value) in entries {
            table.insert(key, value).map_err(StoreError::redb(path))?;
        }
        create_data_tables(&txn, path)?;
    }
    txn.commit()
        .map_err(|err| StoreError::CommitFailed(err.to_string()))
}

/// Marks a file of an older schema as this build's before anything new is
/// written to it: every format this build writes can be read by it, and an
/// older build then says the file is too new rather than misreading it.
pub(crate) fn upgrade_schema(
    db: &Database,
    path: &Path,
    meta: &mut Meta,
) -> Result<(), StoreError> {
    if meta.schema == SCHEMA_VERSION {
        return Ok(());
    }
    let txn = db.begin_write().map_err(StoreError::redb(path))?;
    {
        let mut table = txn.open_table(META).map_err(StoreError::redb(path))?;
        table
            .insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_le_bytes().as_slice())
            .map_err(StoreError::redb(path))?;
    }
    txn.commit()
        .map_err(|err| StoreError::CommitFailed(err.to_string()))?;
    tracing::info!(path = %path.display(), from = meta.schema, to = SCHEMA_VERSION, "upgraded the replica's schema");
    meta.schema = SCHEMA_VERSION;
    Ok(())
}

/// Creates the (empty) data tables, so readers can rely on them existing.
fn create_data_tables(txn: &redb::WriteTransaction, path: &Path) -> Result<(), StoreError> {
    txn.open_table(tables::DOCUMENTS)
        .map_err(StoreError::redb(path))?;
    txn.open_table(tables::SNAPSHOTS)
        .map_err(StoreError::redb(path))?;
    txn.open_table(tables::CHANGES)
        .map_err(StoreError::redb(path))?;
    txn.open_table(tables::SETTINGS)
        .map_err(StoreError::redb(path))?;
    txn.open_table(tables::SYNC_STATES)
        .map_err(StoreError::redb(path))?;
    txn.open_table(tables::ATTESTATIONS)
        .map_err(StoreError::redb(path))?;
    txn.open_table(tables::REFUSALS)
        .map_err(StoreError::redb(path))?;
    Ok(())
}
