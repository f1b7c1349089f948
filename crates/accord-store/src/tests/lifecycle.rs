use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::StoreError;

#[test]
fn create_then_open_gives_same_name_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let created = new_replica(&data);
    let public = created.secret().public();
    drop(created);

    let opened = Replica::open(&data).unwrap();
    assert_eq!(opened.org_name(), "Acme Co-op");
    assert_eq!(opened.created_at(), 1_700_000_000);
    assert_eq!(opened.secret().public(), public);
    assert_eq!(opened.dir(), data);
}

#[test]
fn files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _replica = new_replica(&data);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("org.key")), 0o600);
    assert_eq!(mode(&data), 0o700);
    let key = std::fs::read_to_string(data.join("org.key")).unwrap();
    assert!(key.starts_with("accord-org-key v1\n"));
}

#[test]
fn creating_twice_fails_and_keeps_the_key() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_replica(dir.path()));
    let key_before = std::fs::read(dir.path().join("org.key")).unwrap();

    let again = Replica::create(dir.path(), "Other", [7; 32], 0);
    assert!(
        matches!(again, Err(StoreError::AlreadyInitialised { .. })),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("org.key")).unwrap(),
        key_before
    );
    assert_eq!(Replica::open(dir.path()).unwrap().org_name(), "Acme Co-op");
}

#[test]
fn a_lone_key_file_also_blocks_create() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("org.key"), "precious").unwrap();
    let result = Replica::create(dir.path(), "Acme", SEED, 0);
    assert!(matches!(result, Err(StoreError::AlreadyInitialised { .. })));
    assert_eq!(
        std::fs::read(dir.path().join("org.key")).unwrap(),
        b"precious"
    );
    assert!(!dir.path().join("replica.redb").exists());
}

#[test]
fn second_open_is_in_use_with_our_pid_until_drop() {
    let dir = tempfile::tempdir().unwrap();
    let first = new_replica(dir.path());
    match Replica::open(dir.path()) {
        Err(err @ StoreError::InUse { pid, .. }) => {
            assert_eq!(pid, Some(std::process::id()));
            assert!(err.to_string().contains(&std::process::id().to_string()));
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(first);
    assert!(Replica::open(dir.path()).is_ok());
}

#[test]
fn opening_an_empty_or_missing_folder_says_run_init() {
    let dir = tempfile::tempdir().unwrap();
    for path in [dir.path().to_owned(), dir.path().join("nope")] {
        let err = Replica::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotInitialised { .. }), "{err:?}");
        assert!(err.to_string().contains("accord init"));
    }
    // Refusing must not litter the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_key_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_replica(dir.path()));
    std::fs::remove_file(dir.path().join("org.key")).unwrap();
    let err = Replica::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::MissingKey { .. }), "{err:?}");
    assert!(err.to_string().contains("org.key"));
}

#[test]
fn damaged_or_foreign_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_replica(dir.path()));
    let key_path = dir.path().join("org.key");
    std::fs::write(&key_path, "accord-org-key v1\nnot hex\n").unwrap();
    let err = Replica::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

    let other = format!("accord-org-key v1\n{}\n", "07".repeat(32));
    std::fs::write(&key_path, other).unwrap();
    let err = Replica::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn settings_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let replica = new_replica(dir.path());
    assert_eq!(replica.get_setting("peers").unwrap(), None);
    replica.put_setting("peers", b"a,b".to_vec()).unwrap();
    drop(replica);
    let replica = Replica::open(dir.path()).unwrap();
    assert_eq!(replica.get_setting("peers").unwrap(), Some(b"a,b".to_vec()));
    replica.delete_setting("peers").unwrap();
    assert_eq!(replica.get_setting("peers").unwrap(), None);
}

#[test]
fn replica_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Replica>();
    check::<crate::CommitQueue>();
}
