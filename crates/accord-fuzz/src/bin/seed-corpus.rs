//! Writes the seed corpus of every target into `DIR/<target>/`, one file
//! per seed named by a hash of its content (as libFuzzer names its own).
//!
//! Usage: `cargo run -p accord-fuzz --bin seed-corpus -- crates/accord-fuzz/fuzz/corpus`

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let root: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: seed-corpus DIR")?
        .into();
    for (name, _) in accord_fuzz::TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let seeds = accord_fuzz::seeds::for_target(name);
        for seed in &seeds {
            let mut hasher = DefaultHasher::new();
            seed.hash(&mut hasher);
            let path = dir.join(format!("seed-{:016x}", hasher.finish()));
            std::fs::write(&path, seed).with_context(|| format!("writing {}", path.display()))?;
        }
        println!("{name}: {} seeds", seeds.len());
    }
    Ok(())
}
