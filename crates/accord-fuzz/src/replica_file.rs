//! Target `replica_file`: opening and reading a damaged `replica.redb`.
//!
//! Input layout: one mode byte. Even: the rest is a list of patches
//! `[offset: u32 LE][byte]` applied to a real replica file (built once per
//! process), and a patch with offset `u32::MAX` truncates the file to the
//! length in its next four bytes. Odd: the rest is the whole file. Patching
//! a real file reaches far deeper into redb than random files do, and keeps
//! the corpus small.

use std::path::Path;
use std::sync::OnceLock;

use accord_store::{DocInfo, Repair, Replica, StoreError, WriteBatch};

/// The organisation key seed of the fixture replica.
const SEED: [u8; 32] = [0x0C; 32];
/// Most patches read from one input.
const MAX_PATCHES: usize = 256;

/// Opens the mutated file and reads everything in it. Any error is fine;
/// a panic, or a hang, is a finding.
pub fn replica_file(data: &[u8]) {
    if let Some(dir) = damaged_folder(data) {
        let _ = open_and_read_all(dir.path());
    }
}

/// A folder holding the replica file an input describes (see the module docs).
pub fn damaged_folder(data: &[u8]) -> Option<tempfile::TempDir> {
    let (&mode, rest) = data.split_first()?;
    let file = if mode & 1 == 0 {
        patched(base_replica(), rest)
    } else {
        rest.to_vec()
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    write_folder(dir.path(), &file);
    Some(dir)
}

/// What `accord repair` does to the replica in `dir` as far as the store
/// goes: inspect a copy in memory, read everything from it, then move the
/// file aside and create a fresh replica. Any error is fine; a panic or an
/// abort (redb closing a damaged file) is a finding.
pub fn repair_store(dir: &Path) -> Result<(), StoreError> {
    let repair = Repair::begin(dir)?;
    let inspection = repair.inspect()?;
    if let Some(copy) = &inspection.copy {
        for (id, _) in copy.scan_documents().found {
            let _ = copy.load_document(&id);
            let _ = copy.refusals(&id);
        }
        let _ = copy.get_setting("peers");
    }
    drop(inspection);
    let (fresh, _) = repair.replace("Fuzz Co-op", 1_700_000_000, 1_700_000_001)?;
    fresh.put_setting("peers", b"[]".to_vec())
}

/// Opens the replica in `dir` and reads every document, index entry and setting.
pub fn open_and_read_all(dir: &Path) -> Result<(), StoreError> {
    let replica = Replica::open(dir)?;
    replica.document_index()?;
    for (id, _) in replica.documents()? {
        replica.load_document(&id)?;
    }
    replica.get_setting("peers")?;
    Ok(())
}

/// A real replica file with a few documents, logs and a setting.
pub fn base_replica() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(build_base)
}

fn build_base() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let replica =
        Replica::create(dir.path(), "Fuzz Co-op", SEED, 1_700_000_000).expect("a fresh replica");
    for n in 0..4u8 {
        let mut batch = WriteBatch::new();
        let info = DocInfo {
            partnership: [n; 16],
            kind: "mou".into(),
            title: format!("doc {n}"),
        };
        batch.put_document([n; 16], info, vec![n; 300], 1);
        for entry in 0..3u8 {
            batch.append_changes([n; 16], vec![entry; 40], 1);
        }
        batch.set_heads([n; 16], vec![[n; 32]]);
        replica.commit(batch).expect("the fixture commits");
    }
    replica
        .put_setting("peers", b"ws://relay.example.org:7400".to_vec())
        .expect("the fixture commits");
    drop(replica);
    std::fs::read(dir.path().join("replica.redb")).expect("the fixture file")
}

/// Writes `file` as the replica of a folder with the fixture's key file.
pub fn write_folder(dir: &Path, file: &[u8]) {
    let key = format!("accord-org-key v1\n{}\n", hex(&SEED));
    std::fs::write(dir.join("org.key"), key).expect("a key file");
    std::fs::write(dir.join("replica.redb"), file).expect("a replica file");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn patched(base: &[u8], mut patches: &[u8]) -> Vec<u8> {
    let mut file = base.to_vec();
    for _ in 0..MAX_PATCHES {
        let Some((offset, tail)) = take_u32(patches) else {
            break;
        };
        if offset == u32::MAX {
            let Some((len, tail)) = take_u32(tail) else {
                break;
            };
            file.truncate(len as usize);
            patches = tail;
            continue;
        }
        let Some((&byte, tail)) = tail.split_first() else {
            break;
        };
        if !file.is_empty() {
            let at = offset as usize % file.len();
            file[at] ^= byte;
        }
        patches = tail;
    }
    file
}

fn take_u32(data: &[u8]) -> Option<(u32, &[u8])> {
    let bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some((u32::from_le_bytes(bytes), &data[4..]))
}
