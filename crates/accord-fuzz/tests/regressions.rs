//! The inputs that once made `replica_file` abort (redb panicking twice
//! inside `Database::close` on a damaged file, release builds only), run
//! through the store's side of `accord repair`, which must get to the end:
//! the damaged file moved aside and a fresh replica written.

use std::path::Path;

fn regression(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/replica_file")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn repair_survives_the_abort_on_close_inputs() {
    for name in ["abort-on-close", "abort-on-close-2"] {
        let dir = accord_fuzz::damaged_folder(&regression(name)).expect("an input");
        accord_fuzz::repair_store(dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("replica.redb.damaged-")
            })
            .count();
        assert_eq!(moved, 1, "{name}: the damaged file is kept aside");
        let fresh = accord_store::Replica::open(dir.path()).expect("the fresh replica opens");
        assert_eq!(fresh.get_setting("peers").unwrap(), Some(b"[]".to_vec()));
    }
}
