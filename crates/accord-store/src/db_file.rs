//! Opening `replica.redb` safely: every check that can refuse a file runs
//! before anything writes to it, and a damaged file yields an error, never a panic.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::Path;

use redb::{Builder, Database, DatabaseError, ReadableDatabase, TableError};

use crate::error::{StoreError, no_panic};
use crate::tables::{
    self, META, META_CREATED_AT, META_ORG_KEY, META_ORG_NAME, META_SCHEMA_VERSION, SCHEMA_VERSION,
};

/// File name of the database inside the data folder.
pub(crate) const DB_FILE: &str = "replica.redb";

/// The first bytes of every redb file (redb's `MAGICNUMBER`, which it does not export).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Page cache limit; the default (1 GiB) is far more than a replica needs.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// What `meta` says about a replica.
#[derive(Debug)]
pub(crate) struct Meta {
    pub org_name: String,
    pub created_at: i64,
    pub org_key: [u8; 32],
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

/// Opens the database for writing, verifying every page's checksum on the way.
///
/// The full check costs one read of the file per open; in exchange a file
/// damaged outside redb is reported as `Corrupt` instead of being trusted.
pub(crate) fn open_writable(path: &Path) -> Result<Database, StoreError> {
    no_panic(path, || {
        Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .open(path)
            .map_err(|err| map_open_error(path, err))
    })
}

/// Creates a brand-new database file; fails if any file is already there.
pub(crate) fn create_new(path: &Path) -> Result<Database, StoreError> {
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
    check_schema(path, &get(META_SCHEMA_VERSION)?)?;
    Ok(Meta {
        org_name: String::from_utf8(get(META_ORG_NAME)?)
            .map_err(|_| StoreError::corrupt(path, "the organisation name is not UTF-8"))?,
        created_at: i64::from_le_bytes(fixed(path, META_CREATED_AT, &get(META_CREATED_AT)?)?),
        org_key: fixed(path, META_ORG_KEY, &get(META_ORG_KEY)?)?,
    })
}

fn check_schema(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    match tables::decode_u32(bytes) {
        Some(SCHEMA_VERSION) => Ok(()),
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
    Ok(())
}
