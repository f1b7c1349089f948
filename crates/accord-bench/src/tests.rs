//! A small synthetic trace through every path, so CI exercises the benchmark
//! code without running the full benchmark.

use std::io::Write;

use crate::replay::{accord_replay, naive_replay, raw_replay, raw_text};
use crate::trace::{Patch, Trace, replay_plain};

/// Deterministic typing with backspaces, mid-text inserts, a multi-character
/// paste, a replacement, and non-ASCII characters (positions are code points).
fn synthetic_patches() -> Vec<Patch> {
    let mut patches = Vec::new();
    let mut len = 0usize;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: Vec<char> = "abcdefghij é✓ xyz\n".chars().collect();
    for i in 0..600 {
        let r = next();
        let patch = match (i % 50, r % 10) {
            (49, _) => Patch {
                pos: len / 2,
                del: 0,
                ins: "pasted ✓ text".to_owned(),
            },
            (25, _) if len > 3 => Patch {
                pos: 1,
                del: 2,
                ins: "Ü".to_owned(),
            },
            (_, 0..=1) if len > 0 => Patch {
                pos: (r as usize / 10) % len,
                del: 1,
                ins: String::new(),
            },
            (_, 2) => Patch {
                pos: (r as usize / 10) % (len + 1),
                del: 0,
                ins: alphabet[(r >> 20) as usize % alphabet.len()].to_string(),
            },
            _ => Patch {
                pos: len,
                del: 0,
                ins: alphabet[(r >> 20) as usize % alphabet.len()].to_string(),
            },
        };
        len = len + patch.ins.chars().count() - patch.del;
        patches.push(patch);
    }
    patches
}

#[test]
fn synthetic_trace_replays_identically_through_every_path() {
    let patches = synthetic_patches();
    let expected = replay_plain(&patches);
    assert!(expected.chars().count() > 100);

    let raw = raw_replay(&patches).unwrap();
    assert_eq!(raw_text(&raw.doc).unwrap(), expected);
    assert_eq!(raw.latencies.len(), patches.len());

    let accord = accord_replay(&patches).unwrap();
    assert_eq!(accord.session.text().unwrap(), expected);
    assert_eq!(accord.latencies.len(), patches.len());

    // After compaction and close, the replica reopens to the same text.
    let (dir, doc) = accord.session.compact_and_close().unwrap();
    let ws = accord_workspace::Workspace::open(dir.path()).unwrap();
    let mut live = ws.open_live(&doc).unwrap();
    let obj = live.text_obj(crate::replay::ACCORD_FIELD).unwrap();
    assert_eq!(
        accord_model::automerge::ReadDoc::text(live.agreement().doc(), &obj).unwrap(),
        expected
    );

    let naive = naive_replay(&patches[..100], &replay_plain(&patches[..100])).unwrap();
    assert_eq!(naive.measured, 100);
}

#[test]
fn trace_files_are_read_gzipped_or_plain() {
    let patches = synthetic_patches();
    let txns: Vec<_> = patches
        .iter()
        .map(|p| serde_json::json!({"time": "", "patches": [[p.pos, p.del, p.ins]]}))
        .collect();
    let json =
        serde_json::json!({"startContent": "", "endContent": replay_plain(&patches), "txns": txns})
            .to_string();
    let dir = tempfile::tempdir().unwrap();

    let plain = dir.path().join("t.json");
    std::fs::write(&plain, &json).unwrap();
    let gz = dir.path().join("t.json.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(json.as_bytes()).unwrap();
    enc.finish().unwrap();

    for path in [plain, gz] {
        let trace = Trace::load(&path).unwrap();
        assert_eq!(trace.name, "t");
        assert_eq!(trace.patches, patches);
        assert_eq!(trace.text_after(patches.len()), trace.end_content);
    }
}
