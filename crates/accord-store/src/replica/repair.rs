//! [`Repair`]: checking a replica that may be damaged, reading what is
//! intact, and putting a fresh replica in its place, without ever writing
//! to the damaged file.
//!
//! Every look at the file goes through a copy in memory: redb's crash
//! recovery and its integrity check both write (they fall back to an older
//! commit and rebuild the allocator state), which is what a check should do
//! to a copy and never to the only evidence of what was lost. Copies are
//! leaked rather than closed (see `Db::in_memory_copy`), so a damaged file
//! cannot abort the process on close.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use accord_identity::OrgSecret;
use redb::{ReadableDatabase, ReadableTable};

use super::{Replica, check_key, decode_record, sync_dir};
use crate::db_file::{self, DB_FILE, Db, Meta};
use crate::error::{StoreError, no_panic};
use crate::key_file::{self, KEY_FILE};
use crate::lock::FolderLock;
use crate::tables::DOCUMENTS;
use crate::{DocInfo, DocKey};

/// A data folder held for repair: its lock (so no node or command uses the
/// replica meanwhile) and its key, which repair never touches.
pub struct Repair {
    dir: PathBuf,
    lock: Arc<FolderLock>,
    secret: OrgSecret,
}

impl std::fmt::Debug for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repair")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What [`Repair::inspect`] found in the replica file.
#[derive(Debug)]
pub struct Inspection {
    /// A replica over an in-memory copy of the file, if redb could open
    /// one; reads from it never touch the file on disk.
    pub copy: Option<Replica>,
    /// What is wrong with the file as a database, or `None` when every
    /// page's checksum verified (its content may still be damaged: the
    /// caller checks documents and settings).
    pub damage: Option<String>,
    /// Whether `copy`'s pages were verified. An unverified copy is read on
    /// a best-effort basis: documents are still checked by Automerge and
    /// attestations by their signatures, but other values may be wrong.
    pub verified: bool,
}

/// The rows of `documents` that could be read, for salvage.
#[derive(Debug, Default)]
pub struct DocumentScan {
    /// Every id found, with its record, or why the record is unreadable.
    pub found: Vec<(DocKey, Result<DocInfo, StoreError>)>,
    /// Why the scan stopped before the end of the table, if it did.
    pub stopped: Option<StoreError>,
}

impl Repair {
    /// Locks `dir` for repair and reads its key file.
    ///
    /// Fails with `InUse` while another process (such as `accord serve`)
    /// holds the replica, with `NotInitialised` when the folder has neither
    /// a replica nor a key, and with the key file's own error when the key
    /// is missing or damaged: repair rebuilds the replica, never the key.
    pub fn begin(dir: &Path) -> Result<Repair, StoreError> {
        let key_path = dir.join(KEY_FILE);
        let db_path = dir.join(DB_FILE);
        let exists = |path: &Path| path.try_exists().map_err(StoreError::io(path));
        if !exists(&key_path)? && !exists(&db_path)? {
            return Err(StoreError::NotInitialised {
                dir: dir.to_owned(),
            });
        }
        let lock = Arc::new(FolderLock::acquire(dir)?);
        let secret = key_file::read(&key_path)?;
        Ok(Repair {
            dir: dir.to_owned(),
            lock,
            secret,
        })
    }

    /// The organisation's public key, from the key file.
    pub fn public_key(&self) -> accord_identity::OrgKey {
        self.secret.public()
    }

    /// The replica file this repair is about.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// Reads the replica file into memory and opens the copy, verifying
    /// every page. A file of a newer schema, or of another organisation's
    /// key, is an error (it is not damaged, and repairing it would lose it);
    /// everything else that is wrong is reported in the inspection.
    pub fn inspect(&self) -> Result<Inspection, StoreError> {
        let path = self.db_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Inspection::unreadable("the file is missing"));
            }
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        if bytes.is_empty() {
            return Ok(Inspection::unreadable("the file is empty"));
        }
        if !db_file::has_magic(&bytes) {
            return Ok(Inspection::unreadable(
                "its header is not a redb header (overwritten or not a replica)",
            ));
        }
        let first = match self.verified_copy(&bytes) {
            Ok((copy, None)) => return Ok(Inspection::intact(copy)),
            Ok((copy, Some(damage))) => return Ok(Inspection::damaged(copy, damage, true)),
            Err(err) => not_damage(err)?,
        };
        self.fallback_copy(&bytes, first)
    }

    /// A copy opened without a check, then verified in full; the damage
    /// found, if any (redb then holds the last intact commit in the copy).
    fn verified_copy(&self, bytes: &[u8]) -> Result<(Replica, Option<String>), StoreError> {
        let mut copy = self.copy(bytes, false)?;
        match copy.verify()? {
            true => Ok((copy, None)),
            false => Ok((
                copy,
                Some(
                    "some pages failed their checksums; redb fell back to the last intact commit"
                        .into(),
                ),
            )),
        }
    }

    /// When the verified copy failed: a copy checked on open (it may fall
    /// back to an older intact commit), else one read without any check.
    fn fallback_copy(&self, bytes: &[u8], damage: String) -> Result<Inspection, StoreError> {
        for verified in [true, false] {
            match self.copy(bytes, verified) {
                Ok(copy) => return Ok(Inspection::damaged(copy, damage, verified)),
                Err(err) => {
                    not_damage(err)?;
                }
            }
        }
        Ok(Inspection::unreadable(&damage))
    }

    /// A read-write replica over an in-memory copy of `bytes`, sharing this
    /// repair's lock; `check` verifies every page on open.
    fn copy(&self, bytes: &[u8], check: bool) -> Result<Replica, StoreError> {
        let path = self.db_path();
        let db = Db::in_memory_copy(bytes, &path, check)?;
        let meta = no_panic(&path, || db_file::read_meta(&*db, &path))?;
        check_key(&meta, &self.secret, &self.dir.join(KEY_FILE))?;
        Ok(self.assemble(db, meta))
    }

    /// Moves the damaged file aside (to `replica.redb.damaged-<now>`, never
    /// deleting anything) and creates an empty replica in its place with
    /// the same key, name and creation time. Returns the new replica and
    /// where the old file went (`None` when there was no file).
    pub fn replace(
        self,
        org_name: &str,
        created_at: i64,
        now_unix: i64,
    ) -> Result<(Replica, Option<PathBuf>), StoreError> {
        let path = self.db_path();
        let moved_to = self.move_aside(&path, now_unix)?;
        let db = db_file::create_new(&path)?;
        let meta = Meta {
            schema: crate::SCHEMA_VERSION,
            org_name: org_name.to_owned(),
            created_at,
            org_key: *self.secret.public().as_bytes(),
        };
        db_file::write_meta(&db, &path, &meta)?;
        sync_dir(&self.dir)?;
        Ok((self.assemble(db, meta), moved_to))
    }

    fn move_aside(&self, path: &Path, now_unix: i64) -> Result<Option<PathBuf>, StoreError> {
        if !path.try_exists().map_err(StoreError::io(path))? {
            return Ok(None);
        }
        let target = (0..)
            .map(|n| {
                let suffix = if n == 0 {
                    String::new()
                } else {
                    format!("-{n}")
                };
                self.dir
                    .join(format!("{DB_FILE}.damaged-{now_unix}{suffix}"))
            })
            .find(|candidate| !candidate.exists())
            .expect("an unused name exists");
        std::fs::rename(path, &target).map_err(StoreError::io(path))?;
        sync_dir(&self.dir)?;
        Ok(Some(target))
    }

    fn assemble(&self, db: Db, meta: Meta) -> Replica {
        let secret = OrgSecret::from_seed(self.secret.seed());
        Replica::assemble(&self.dir, db, secret, meta, Arc::clone(&self.lock))
    }
}

/// Errors that mean "not damaged, do not replace": passed through; any
/// other error is returned as the damage it describes.
fn not_damage(err: StoreError) -> Result<String, StoreError> {
    match err {
        StoreError::Corrupt { detail, .. } => Ok(detail),
        StoreError::Database(detail) => Ok(detail),
        StoreError::NotAReplica { .. } => Ok("it is not a redb database".into()),
        other => Err(other),
    }
}

impl Inspection {
    fn intact(copy: Replica) -> Inspection {
        Inspection {
            copy: Some(copy),
            damage: None,
            verified: true,
        }
    }

    fn damaged(copy: Replica, damage: String, verified: bool) -> Inspection {
        Inspection {
            copy: Some(copy),
            damage: Some(damage),
            verified,
        }
    }

    fn unreadable(damage: &str) -> Inspection {
        Inspection {
            copy: None,
            damage: Some(damage.to_owned()),
            verified: false,
        }
    }
}

impl Replica {
    /// Every row of `documents` that can be read, each record decoded on
    /// its own: a damaged record does not hide the others, and a scan that
    /// fails part way (or panics inside redb) keeps the rows read before.
    pub fn scan_documents(&self) -> DocumentScan {
        let path = self.db_path.as_path();
        let mut scan = DocumentScan::default();
        let result = no_panic(path, || {
            let txn = self.db.begin_read().map_err(StoreError::redb(path))?;
            let table = txn.open_table(DOCUMENTS).map_err(StoreError::redb(path))?;
            for entry in table.iter().map_err(StoreError::redb(path))? {
                let (key, value) = entry.map_err(StoreError::redb(path))?;
                let record = decode_record(path, value.value()).map(|r| r.info);
                scan.found.push((key.value(), record));
            }
            Ok(())
        });
        scan.stopped = result.err();
        scan
    }
}
