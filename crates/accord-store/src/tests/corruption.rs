use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use redb::ReadableDatabase;

use super::*;
use crate::tables::{META, META_SCHEMA_VERSION};
use crate::{StoreError, WriteBatch};

/// A replica with a few documents and logs, closed; returns the path of its database.
fn populated(dir: &Path) -> PathBuf {
    let replica = new_replica(dir);
    for n in 0..20u8 {
        let mut editor = Editor::new();
        let mut batch = WriteBatch::new();
        batch.put_document([n; 16], info(&format!("doc {n}")), editor.doc.save(), 1);
        for word in ["lorem ", "ipsum ", "dolor"] {
            batch.append_changes([n; 16], editor.type_text(word), 1);
        }
        replica.commit(batch).unwrap();
    }
    drop(replica);
    dir.join("replica.redb")
}

/// Opens and reads everything; must return (with any result) rather than panic.
fn open_and_read_all(dir: &Path) -> Result<(), StoreError> {
    let replica = Replica::open(dir)?;
    for (id, _) in replica.documents()? {
        replica.load_document(&id)?;
    }
    Ok(())
}

fn assert_no_panic(dir: &Path) -> Result<(), StoreError> {
    catch_unwind(AssertUnwindSafe(|| open_and_read_all(dir)))
        .expect("opening a damaged replica panicked")
}

#[test]
fn a_foreign_file_is_not_a_replica_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.redb");
    let content = b"SQLite format 3\0 definitely not redb".repeat(100);
    std::fs::write(&path, &content).unwrap();
    let err = Replica::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAReplica { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(!dir.path().join("accord.lock").exists());
}

#[test]
fn truncated_replicas_give_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path());
    let original = std::fs::read(&path).unwrap();
    for len in [original.len() / 2, 100, 8, 0] {
        std::fs::write(&path, &original[..len]).unwrap();
        let result = assert_no_panic(dir.path());
        eprintln!("truncated to {len}: {result:?}");
        assert!(
            matches!(
                result,
                Err(StoreError::Corrupt { .. } | StoreError::NotAReplica { .. })
            ),
            "truncated to {len}: {result:?}"
        );
    }
}

#[test]
fn byte_flips_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path());
    let original = std::fs::read(&path).unwrap();
    let mut outcomes = (0, 0);
    for seed in 1..=128u64 {
        let mut damaged = original.clone();
        flip_bytes(&mut damaged, seed, 8);
        std::fs::write(&path, &damaged).unwrap();
        match assert_no_panic(dir.path()) {
            Ok(()) => outcomes.0 += 1,
            Err(err) => {
                eprintln!("seed {seed}: {err}");
                outcomes.1 += 1;
            }
        }
    }
    assert_eq!(outcomes.0 + outcomes.1, 128);
}

/// Flips `count` pseudo-random bytes in the middle 80% of `bytes`.
fn flip_bytes(bytes: &mut [u8], seed: u64, count: usize) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let (lo, span) = (bytes.len() / 10, bytes.len() * 8 / 10);
    for _ in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = lo + (state as usize) % span;
        bytes[at] ^= (state >> 32) as u8 | 1;
    }
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path());
    set_meta(&path, META_SCHEMA_VERSION, &99u32.to_le_bytes());
    let before = std::fs::read(&path).unwrap();

    let err = Replica::open(dir.path()).unwrap_err();
    match &err {
        StoreError::TooNew {
            found, supported, ..
        } => assert_eq!((*found, *supported), (99, crate::SCHEMA_VERSION)),
        other => panic!("expected TooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade Accord"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_version_1_replica_opens_and_is_marked_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path());
    set_meta(&path, META_SCHEMA_VERSION, &1u32.to_le_bytes());
    let replica = Replica::open(dir.path()).expect("a version 1 file opens");
    assert!(!replica.documents().unwrap().is_empty());
    drop(replica);
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn.open_table(META).unwrap();
    let schema = meta
        .get(META_SCHEMA_VERSION)
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(schema, crate::SCHEMA_VERSION.to_le_bytes());
}

#[test]
fn a_redb_file_without_accord_meta_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.redb");
    std::fs::write(
        dir.path().join("org.key"),
        format!("accord-org-key v1\n{}\n", "2a".repeat(32)),
    )
    .unwrap();
    let other: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("someone_else");
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(other).unwrap().insert("x", &1).unwrap();
    txn.commit().unwrap();
    drop(db);
    let before = std::fs::read(&path).unwrap();

    let err = Replica::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_malformed_document_record_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path());
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(crate::tables::DOCUMENTS)
            .unwrap()
            .insert([3; 16], [1u8, 2, 3].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let replica = Replica::open(dir.path()).unwrap();
    assert!(matches!(
        replica.documents(),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        replica.document_index(),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        replica.load_document(&[3; 16]),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(replica.load_document(&[4; 16]).unwrap().is_some());
}

fn set_meta(path: &Path, key: &str, value: &[u8]) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(key, value).unwrap();
    txn.commit().unwrap();
    drop(db);
    // Sanity: the value really is there for the next open.
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(META).unwrap();
    assert_eq!(table.get(key).unwrap().unwrap().value(), value);
}

const CRASH_DIR_VAR: &str = "ACCORD_STORE_TEST_CRASH_DIR";

/// Not a test on its own: the child process of `a_crashed_writer_is_recovered`
/// (does nothing unless that test sets `ACCORD_STORE_TEST_CRASH_DIR`).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
        return;
    };
    let replica = new_replica(Path::new(&dir));
    let mut batch = WriteBatch::new();
    batch.put_document(DOC, info("before the crash"), Editor::new().doc.save(), 1);
    replica.commit(batch).unwrap();
    // Die without closing anything, as `kill -9` would.
    std::process::abort();
}

#[test]
fn a_crashed_writer_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "tests::corruption::crash_child",
            "--exact",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_VAR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");

    let replica = Replica::open(dir.path()).unwrap();
    let stored = replica.load_document(&DOC).unwrap().unwrap();
    assert_eq!(stored.info.title, "before the crash");
    assert_eq!(replica.org_name(), "Acme Co-op");
}
