//! Sequential editing traces (`josephg/editing-traces` format), gzip JSON:
//! `{ "endContent": "...", "txns": [ { "patches": [[pos, del, ins], ...] } ] }`.
//! Positions and counts are Unicode code points.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;
use serde::Deserialize;

/// One edit: at code point `pos`, remove `del` code points, then insert `ins`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub pos: usize,
    pub del: usize,
    pub ins: String,
}

/// A trace flattened to its patches (one patch = one keystroke = one change).
#[derive(Clone, Debug)]
pub struct Trace {
    pub name: String,
    pub patches: Vec<Patch>,
    pub txns: usize,
    pub end_content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceFile {
    end_content: String,
    txns: Vec<TxnFile>,
}

#[derive(Deserialize)]
struct TxnFile {
    patches: Vec<(usize, usize, String)>,
}

impl Trace {
    /// Reads a gzip-compressed (or plain) JSON trace.
    pub fn load(path: &Path) -> Result<Trace> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut raw = Vec::new();
        BufReader::new(file)
            .read_to_end(&mut raw)
            .with_context(|| format!("reading {}", path.display()))?;
        let json = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            GzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .with_context(|| format!("decompressing {}", path.display()))?;
            out
        } else {
            raw
        };
        let parsed: TraceFile = serde_json::from_slice(&json)
            .with_context(|| format!("parsing {} as a sequential trace", path.display()))?;
        let name = path
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_end_matches(".gz")
                    .trim_end_matches(".json")
                    .to_owned()
            })
            .unwrap_or_else(|| "trace".to_owned());
        let txns = parsed.txns.len();
        let patches = parsed
            .txns
            .into_iter()
            .flat_map(|t| t.patches)
            .map(|(pos, del, ins)| Patch { pos, del, ins })
            .collect::<Vec<_>>();
        if patches.is_empty() {
            bail!("{} holds no patches", path.display());
        }
        Ok(Trace {
            name,
            patches,
            txns,
            end_content: parsed.end_content,
        })
    }

    /// The text after the first `n` patches, replayed on a plain character vector.
    pub fn text_after(&self, n: usize) -> String {
        replay_plain(&self.patches[..n.min(self.patches.len())])
    }
}

/// Reference replay without any CRDT, to check the other paths.
pub fn replay_plain(patches: &[Patch]) -> String {
    let mut chars: Vec<char> = Vec::new();
    for p in patches {
        let end = (p.pos + p.del).min(chars.len());
        chars.splice(p.pos.min(chars.len())..end, p.ins.chars());
    }
    chars.into_iter().collect()
}
