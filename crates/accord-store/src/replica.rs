//! [`Replica`]: one data folder, opened and locked.

mod backend;
mod repair;

pub use repair::{DocumentScan, Inspection, Repair};

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use accord_identity::OrgSecret;
use redb::{Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableError};

use crate::batch::WriteBatch;
use crate::commit_queue::CommitQueue;
use crate::db_file::{self, DB_FILE, Db, Meta};
use crate::error::{StoreError, no_panic};
use crate::key_file::{self, KEY_FILE};
use crate::lock::FolderLock;
use crate::tables::{
    self, ATTESTATIONS, CHANGES, DOCUMENTS, DocRecord, MAX_RECORD_BYTES, MAX_SYNC_STATE_BYTES,
    REFUSALS, SCHEMA_VERSION, SETTINGS, SNAPSHOTS, SYNC_STATES,
};
use crate::{DocInfo, DocKey};

/// A document as stored: the snapshot plus the log appended since it was taken.
///
/// Rebuild with `AutoCommit::load(&snapshot)` then `load_incremental` of each
/// entry of `changes`, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDocument {
    /// What the document is and which partnership it belongs to.
    pub info: DocInfo,
    /// The last compacted state (`AutoCommit::save`).
    pub snapshot: Vec<u8>,
    /// Log entries in append order; each is one or more raw Automerge change chunks.
    pub changes: Vec<Vec<u8>>,
    /// How many changes the snapshot holds (as reported by the writer).
    pub snapshot_changes: u64,
    /// How many changes the log holds; with `log_bytes`, tells when to compact.
    pub log_changes: u64,
    /// Total size of the log entries in bytes.
    pub log_bytes: u64,
    /// The heads last recorded with `set_heads` (empty: unknown).
    pub heads: Vec<[u8; 32]>,
    /// The sequence number the next log entry will get. A compactor passes
    /// it, plus one per entry it appends, as `expected_next_seq` to
    /// [`WriteBatch::compact`], so that entries appended by others are never lost.
    pub next_seq: u64,
    /// The document's attestations (opaque records, see `WriteBatch::put_attestation`).
    pub attestations: Vec<Vec<u8>>,
}

/// A row of a per-document table: its 32-byte key and opaque value.
pub type KeyedRecord = ([u8; 32], Vec<u8>);

/// One row of [`Replica::document_index`]: what sync needs to know about a
/// document without loading its snapshot or log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The document's id.
    pub id: DocKey,
    /// What the document is and which partnership it belongs to.
    pub info: DocInfo,
    /// The heads last recorded with `set_heads` (empty: unknown, load the document).
    pub heads: Vec<[u8; 32]>,
}

/// The durable local replica of one organisation: the database, its key, and
/// the folder lock that makes this the only live handle on the folder.
///
/// `Send + Sync`: share it through an `Arc`. Reads run concurrently; writes
/// are serialised by the database.
pub struct Replica {
    // Field order is drop order: the database closes before the lock is released.
    db: Db,
    secret: OrgSecret,
    org_name: String,
    created_at: i64,
    dir: PathBuf,
    db_path: PathBuf,
    // Shared with a `Repair` that replaces a damaged file while holding the folder.
    _lock: Arc<FolderLock>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("dir", &self.dir)
            .field("org_name", &self.org_name)
            .field("org", &self.secret.public())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Initialises a new replica in `dir` (created with mode 0700 if missing):
    /// the key file (mode 0600), the lock, and the database with its `meta`.
    ///
    /// Never overwrites: if a replica or key file exists, fails with
    /// `AlreadyInitialised` and leaves them untouched. If creation fails
    /// halfway, the files it created are removed so `create` can be retried.
    pub fn create(
        dir: &Path,
        org_name: &str,
        seed: [u8; 32],
        now_unix: i64,
    ) -> Result<Replica, StoreError> {
        create_private_dir(dir)?;
        refuse_existing(dir)?;
        let lock = FolderLock::acquire(dir)?;
        refuse_existing(dir)?;
        let secret = OrgSecret::from_seed(seed);
        let mut cleanup = Cleanup::default();
        let key_path = dir.join(KEY_FILE);
        key_file::write_new(&key_path, &secret)?;
        cleanup.0.push(key_path);
        let db_path = dir.join(DB_FILE);
        let db = db_file::create_new(&db_path)?;
        cleanup.0.push(db_path.clone());
        let meta = Meta {
            schema: SCHEMA_VERSION,
            org_name: org_name.to_owned(),
            created_at: now_unix,
            org_key: *secret.public().as_bytes(),
        };
        db_file::write_meta(&db, &db_path, &meta)?;
        sync_dir(dir)?;
        cleanup.0.clear();
        Ok(Replica::assemble(dir, db, secret, meta, Arc::new(lock)))
    }

    /// Opens an existing replica and locks its folder for this handle's lifetime.
    ///
    /// Checks, in order and before anything writes: the folder holds a
    /// replica, it is a redb file, no one else has it open, the key file is
    /// sound, the schema is not newer than this build, and the key belongs to
    /// this replica. A file that was not closed cleanly is recovered by redb
    /// (which verifies every page's checksum); a cleanly closed one is
    /// trusted (see [`verify`](Replica::verify) for the full check).
    pub fn open(dir: &Path) -> Result<Replica, StoreError> {
        let db_path = dir.join(DB_FILE);
        if !db_path.try_exists().map_err(StoreError::io(&db_path))? {
            return Err(StoreError::NotInitialised {
                dir: dir.to_owned(),
            });
        }
        db_file::check_magic(&db_path)?;
        let lock = FolderLock::acquire(dir)?;
        let key_path = dir.join(KEY_FILE);
        let secret = key_file::read(&key_path)?;
        if let Some(meta) = db_file::precheck(&db_path)? {
            check_key(&meta, &secret, &key_path)?;
        }
        let db = db_file::open_writable(&db_path)?;
        let mut meta = no_panic(&db_path, || db_file::read_meta(&*db, &db_path))?;
        check_key(&meta, &secret, &key_path)?;
        no_panic(&db_path, || {
            db_file::upgrade_schema(&db, &db_path, &mut meta)
        })?;
        Ok(Replica::assemble(dir, db, secret, meta, Arc::new(lock)))
    }

    fn assemble(
        dir: &Path,
        db: Db,
        secret: OrgSecret,
        meta: Meta,
        lock: Arc<FolderLock>,
    ) -> Replica {
        Replica {
            db,
            secret,
            org_name: meta.org_name,
            created_at: meta.created_at,
            dir: dir.to_owned(),
            db_path: dir.join(DB_FILE),
            _lock: lock,
        }
    }

    /// The data folder, for messages and for files other crates keep beside the replica.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The organisation name given at `create`.
    pub fn org_name(&self) -> &str {
        &self.org_name
    }

    /// When the replica was created (unix seconds, as passed to `create`).
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// The organisation's secret key, loaded from `org.key`.
    pub fn secret(&self) -> &OrgSecret {
        &self.secret
    }

    /// Every document with its description, sorted by id.
    pub fn documents(&self) -> Result<Vec<(DocKey, DocInfo)>, StoreError> {
        self.read(|txn, path| {
            let table = txn.open_table(DOCUMENTS).map_err(StoreError::redb(path))?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(StoreError::redb(path))? {
                let (key, value) = entry.map_err(StoreError::redb(path))?;
                let record = decode_record(path, value.value())?;
                out.push((key.value(), record.info));
            }
            out.sort_by_key(|(id, _)| *id);
            Ok(out)
        })
    }

    /// Every document with its description and heads, sorted by id.
    ///
    /// One scan of `documents` and nothing else (no snapshot, no log), so a
    /// reconnecting peer can be told what changed across many documents cheaply.
    pub fn document_index(&self) -> Result<Vec<IndexEntry>, StoreError> {
        self.read(|txn, path| {
            let table = txn.open_table(DOCUMENTS).map_err(StoreError::redb(path))?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(StoreError::redb(path))? {
                let (key, value) = entry.map_err(StoreError::redb(path))?;
                let record = decode_record(path, value.value())?;
                out.push(IndexEntry {
                    id: key.value(),
                    info: record.info,
                    heads: record.heads,
                });
            }
            out.sort_by_key(|entry| entry.id);
            Ok(out)
        })
    }

    /// One document's snapshot and log, or `None` if the replica does not hold it.
    pub fn load_document(&self, id: &DocKey) -> Result<Option<StoredDocument>, StoreError> {
        self.read(|txn, path| {
            let documents = txn.open_table(DOCUMENTS).map_err(StoreError::redb(path))?;
            let Some(value) = documents.get(id).map_err(StoreError::redb(path))? else {
                return Ok(None);
            };
            let record = decode_record(path, value.value())?;
            let snapshot = read_snapshot(txn, path, *id)?;
            let changes = read_log(txn, path, *id)?;
            let attestations = read_records(txn, path, ATTESTATIONS, *id)?
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            check_log_bytes(path, &changes, record.log_bytes)?;
            Ok(Some(StoredDocument {
                attestations,
                info: record.info,
                snapshot,
                changes,
                snapshot_changes: record.snapshot_changes,
                log_changes: record.log_changes,
                log_bytes: record.log_bytes,
                heads: record.heads,
                next_seq: record.next_seq,
            }))
        })
    }

    /// The stored sync state of document `doc` with the peer organisation
    /// whose public key is `peer`, or `None` if none was stored.
    pub fn sync_state(&self, doc: &DocKey, peer: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn, path| {
            let table = match txn.open_table(SYNC_STATES) {
                Ok(table) => table,
                // A replica created before the table existed: no state yet.
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(err) => return Err(StoreError::from_redb(path, err)),
            };
            let Some(value) = table.get((*doc, *peer)).map_err(StoreError::redb(path))? else {
                return Ok(None);
            };
            if value.value().len() > MAX_SYNC_STATE_BYTES {
                return Err(StoreError::corrupt(
                    path,
                    "a sync state is larger than allowed",
                ));
            }
            Ok(Some(value.value().to_vec()))
        })
    }

    /// The attestations stored for document `doc`: (id, opaque record).
    pub fn attestations(&self, doc: &DocKey) -> Result<Vec<KeyedRecord>, StoreError> {
        self.read(|txn, path| read_records(txn, path, ATTESTATIONS, *doc))
    }

    /// The refusals recorded for document `doc`: (change hash, opaque record).
    pub fn refusals(&self, doc: &DocKey) -> Result<Vec<KeyedRecord>, StoreError> {
        self.read(|txn, path| read_records(txn, path, REFUSALS, *doc))
    }

    /// Applies `batch` in one durable write transaction: all of it or nothing.
    ///
    /// Returns only after the data is on disk (`Durability::Immediate`). For
    /// many small writes, use a [`CommitQueue`] instead.
    ///
    /// The exception is a batch of sync states alone (see
    /// [`WriteBatch::is_durable_data`]): it is committed without an fsync, and
    /// reaches the disk with the next durable commit or when the replica is
    /// closed. A relay settles a sync state per subscriber per edit; an fsync
    /// for each would put the disk's latency on every subscriber's path.
    pub fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let path = self.db_path.as_path();
        no_panic(path, || {
            let mut txn = self.db.begin_write().map_err(StoreError::redb(path))?;
            let durability = if batch.is_durable_data() {
                Durability::Immediate
            } else {
                Durability::None
            };
            txn.set_durability(durability)
                .map_err(|err| StoreError::Database(err.to_string()))?;
            // On error the transaction is dropped uncommitted, which aborts it.
            batch.apply(&txn, path)?;
            txn.commit()
                .map_err(|err| StoreError::CommitFailed(err.to_string()))
        })
    }

    /// Starts a group-commit queue writing to this replica (see [`CommitQueue`]).
    pub fn commit_queue(self: &Arc<Self>) -> CommitQueue {
        CommitQueue::start(Arc::clone(self))
    }

    /// Rewrites the file to return space freed by compactions and deletions.
    ///
    /// Needs `&mut self` because redb requires that no transaction is live.
    pub fn compact_file(&mut self) -> Result<(), StoreError> {
        const MAX_PASSES: usize = 8;
        let path = self.db_path.clone();
        for _ in 0..MAX_PASSES {
            let progressed = no_panic(&path, || {
                self.db
                    .compact()
                    .map_err(|err| StoreError::Database(err.to_string()))
            })?;
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Verifies the checksum of every page of the database and repairs what
    /// redb can: `Ok(true)` if the file was intact, `Ok(false)` if damage was
    /// found and repaired, `Err(Corrupt)` if it could not be. Reads the whole
    /// file; for a `doctor`-style check, not for every open.
    pub fn verify(&mut self) -> Result<bool, StoreError> {
        db_file::verify(&mut self.db, &self.db_path)
    }

    /// Size of the database file in bytes, e.g. to decide when to `compact_file`.
    pub fn file_size(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.db_path)
            .map(|meta| meta.len())
            .map_err(StoreError::io(&self.db_path))
    }

    /// A small setting stored by a later feature, or `None` if unset.
    pub fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn, path| {
            let table = txn.open_table(SETTINGS).map_err(StoreError::redb(path))?;
            let value = table.get(key).map_err(StoreError::redb(path))?;
            value
                .map(|v| tables::open_setting(v.value()))
                .transpose()
                .map_err(|detail| StoreError::corrupt(path, format!("setting {key:?}: {detail}")))
        })
    }

    /// Sets one setting durably (a one-op [`WriteBatch`]).
    pub fn put_setting(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::new();
        batch.put_setting(key, value);
        self.commit(batch)
    }

    /// Removes one setting durably (a one-op [`WriteBatch`]).
    pub fn delete_setting(&self, key: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::new();
        batch.delete_setting(key);
        self.commit(batch)
    }

    /// Runs `f` in a read transaction, mapping a panic in redb to `Corrupt`.
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let path = self.db_path.as_path();
        no_panic(path, || {
            let txn = self.db.begin_read().map_err(StoreError::redb(path))?;
            f(&txn, path)
        })
    }
}

/// The chunks of a snapshot, concatenated; they must be numbered 0, 1, 2...
fn read_snapshot(txn: &ReadTransaction, path: &Path, id: DocKey) -> Result<Vec<u8>, StoreError> {
    let table = txn.open_table(SNAPSHOTS).map_err(StoreError::redb(path))?;
    let range = table
        .range((id, 0)..=(id, u32::MAX))
        .map_err(StoreError::redb(path))?;
    let mut snapshot = Vec::new();
    let mut chunks = 0u32;
    for entry in range {
        let (key, value) = entry.map_err(StoreError::redb(path))?;
        if key.value().1 != chunks {
            return Err(StoreError::corrupt(path, "a snapshot is missing a chunk"));
        }
        chunks += 1;
        snapshot.extend_from_slice(value.value());
    }
    if chunks == 0 {
        return Err(StoreError::corrupt(path, "a document has no snapshot"));
    }
    Ok(snapshot)
}

fn read_log(txn: &ReadTransaction, path: &Path, id: DocKey) -> Result<Vec<Vec<u8>>, StoreError> {
    let table = txn.open_table(CHANGES).map_err(StoreError::redb(path))?;
    let range = table
        .range((id, 0)..=(id, u64::MAX))
        .map_err(StoreError::redb(path))?;
    range
        .map(|entry| {
            let (_, value) = entry.map_err(StoreError::redb(path))?;
            Ok(value.value().to_vec())
        })
        .collect()
}

/// Every row of a (document, 32-byte key) table for one document. A table
/// missing from an older replica reads as empty.
fn read_records(
    txn: &ReadTransaction,
    path: &Path,
    table: redb::TableDefinition<(DocKey, [u8; 32]), &[u8]>,
    id: DocKey,
) -> Result<Vec<KeyedRecord>, StoreError> {
    let table = match txn.open_table(table) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(err) => return Err(StoreError::from_redb(path, err)),
    };
    let range = table
        .range((id, [0u8; 32])..=(id, [0xffu8; 32]))
        .map_err(StoreError::redb(path))?;
    range
        .map(|entry| {
            let (key, value) = entry.map_err(StoreError::redb(path))?;
            if value.value().len() > MAX_RECORD_BYTES {
                return Err(StoreError::corrupt(path, "a record is larger than allowed"));
            }
            Ok((key.value().1, value.value().to_vec()))
        })
        .collect()
}

/// The log read must add up to the size its record counts. A damaged
/// b-tree page of a cleanly closed file (which redb trusts without
/// checksums) can make a range scan skip entries, and a shorter log still
/// loads in Automerge: without this check the lost changes would go unnoticed.
fn check_log_bytes(path: &Path, log: &[Vec<u8>], expected: u64) -> Result<(), StoreError> {
    let found: u64 = log.iter().map(|entry| entry.len() as u64).sum();
    if found == expected {
        Ok(())
    } else {
        Err(StoreError::corrupt(
            path,
            format!("a change log holds {found} bytes but its record counts {expected}"),
        ))
    }
}

fn decode_record(path: &Path, bytes: &[u8]) -> Result<DocRecord, StoreError> {
    DocRecord::decode(bytes).map_err(|detail| StoreError::corrupt(path, detail))
}

fn check_key(meta: &Meta, secret: &OrgSecret, key_path: &Path) -> Result<(), StoreError> {
    if meta.org_key == *secret.public().as_bytes() {
        Ok(())
    } else {
        Err(StoreError::KeyMismatch {
            path: key_path.to_owned(),
        })
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(StoreError::io(dir))
}

fn refuse_existing(dir: &Path) -> Result<(), StoreError> {
    for name in [DB_FILE, KEY_FILE] {
        let path = dir.join(name);
        if path.try_exists().map_err(StoreError::io(&path))? {
            return Err(StoreError::AlreadyInitialised {
                dir: dir.to_owned(),
            });
        }
    }
    Ok(())
}

/// Makes the new files' directory entries durable, not just their contents.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// Files a half-finished `create` made; removed on drop unless cleared.
#[derive(Default)]
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(err) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %err, "could not remove a half-created file");
            }
        }
    }
}
