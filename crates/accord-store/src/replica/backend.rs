//! Replicas over any redb [`StorageBackend`]: how the crash and fault tests
//! put a simulated disk under the real `Replica`, `WriteBatch` and
//! `CommitQueue` code. The folder still holds the key file and the lock;
//! only the database lives in the backend.

use std::path::Path;
use std::sync::Arc;

use accord_identity::OrgSecret;
use redb::{Builder, StorageBackend};

use super::{Replica, check_key, create_private_dir, refuse_existing};
use crate::db_file::{self, DB_FILE, Db, Meta};
use crate::error::{StoreError, no_panic};
use crate::key_file::{self, KEY_FILE};
use crate::lock::FolderLock;

/// A small page cache, so that reads reach the backend as they would a disk.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

impl Replica {
    /// Like [`create`](Replica::create), with the database in `backend`
    /// instead of `dir/replica.redb`. [`file_size`](Replica::file_size) is
    /// not available on such a replica.
    pub fn create_with_backend(
        dir: &Path,
        org_name: &str,
        seed: [u8; 32],
        now_unix: i64,
        backend: impl StorageBackend,
    ) -> Result<Replica, StoreError> {
        create_private_dir(dir)?;
        refuse_existing(dir)?;
        let lock = FolderLock::acquire(dir)?;
        let secret = OrgSecret::from_seed(seed);
        key_file::write_new(&dir.join(KEY_FILE), &secret)?;
        let db_path = dir.join(DB_FILE);
        let db = open_backend(&db_path, backend)?;
        let meta = Meta {
            schema: crate::SCHEMA_VERSION,
            org_name: org_name.to_owned(),
            created_at: now_unix,
            org_key: *secret.public().as_bytes(),
        };
        db_file::write_meta(&db, &db_path, &meta)?;
        Ok(Replica::assemble(dir, db, secret, meta, Arc::new(lock)))
    }

    /// Like [`open`](Replica::open), with the database in `backend`. redb
    /// recovers a backend left by a crash exactly as it recovers a file.
    pub fn open_with_backend(
        dir: &Path,
        backend: impl StorageBackend,
    ) -> Result<Replica, StoreError> {
        let lock = FolderLock::acquire(dir)?;
        let key_path = dir.join(KEY_FILE);
        let secret = key_file::read(&key_path)?;
        let db_path = dir.join(DB_FILE);
        let db = open_backend(&db_path, backend)?;
        let meta = no_panic(&db_path, || db_file::read_meta(&*db, &db_path))?;
        check_key(&meta, &secret, &key_path)?;
        Ok(Replica::assemble(dir, db, secret, meta, Arc::new(lock)))
    }
}

fn open_backend(path: &Path, backend: impl StorageBackend) -> Result<Db, StoreError> {
    no_panic(path, || {
        Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map(|db| Db::new(db, path))
            .map_err(|err| StoreError::from_redb(path, err))
    })
}
