//! Table definitions and the byte layout of every record this crate writes.
//!
//! Records are encoded by hand (little-endian, length-prefixed strings) so the
//! on-disk format is fixed by this file alone, not by a serializer's version.

use redb::TableDefinition;

use crate::DocInfo;
use crate::DocKey;

/// Replica-wide facts: schema version, organisation name, creation time, public key.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// One [`DocRecord`] per document.
pub(crate) const DOCUMENTS: TableDefinition<DocKey, &[u8]> = TableDefinition::new("documents");
/// The latest compacted Automerge snapshot (`AutoCommit::save`) of each
/// document, split into chunks of at most [`SNAPSHOT_CHUNK`] bytes keyed by
/// (document, chunk index from 0): the snapshot is the chunks concatenated in order.
pub(crate) const SNAPSHOTS: TableDefinition<(DocKey, u32), &[u8]> =
    TableDefinition::new("snapshots");

/// Largest snapshot chunk. redb stores a value above a page in its own run of
/// pages rounded up to a power of two, so one 130 KB value occupies 256 KiB
/// (and after `compact` about twice that). Chunks just under 16 KiB (leaving
/// room for redb's per-value overhead) keep the waste per chunk small.
pub(crate) const SNAPSHOT_CHUNK: usize = 16 * 1024 - 128;
/// Change-log entries, keyed by (document, sequence number) so one range scan loads a log.
pub(crate) const CHANGES: TableDefinition<(DocKey, u64), &[u8]> = TableDefinition::new("changes");
/// Free-form small settings for later features (known peers etc.).
pub(crate) const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
/// Per-peer sync state of each document, keyed by (document, peer organisation key);
/// the value is an encoded `automerge::sync::State`, opaque to this crate.
pub(crate) const SYNC_STATES: TableDefinition<(DocKey, [u8; 32]), &[u8]> =
    TableDefinition::new("sync_states");

/// Attestations (organisations' signatures over document heads), keyed by
/// (document, attestation id); values are opaque to this crate. They are
/// stored in the same transaction as the changes they cover.
pub(crate) const ATTESTATIONS: TableDefinition<(DocKey, [u8; 32]), &[u8]> =
    TableDefinition::new("attestations");
/// Changes this replica refused, keyed by (document, change hash); values
/// are opaque records for the audit. One row per refused change, however
/// often a peer offers it again.
pub(crate) const REFUSALS: TableDefinition<(DocKey, [u8; 32]), &[u8]> =
    TableDefinition::new("refusals");
/// Largest attestation or refusal record accepted.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// `meta` key: schema version, `u32` little-endian.
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// `meta` key: organisation name, UTF-8.
pub(crate) const META_ORG_NAME: &str = "org_name";
/// `meta` key: creation time, unix seconds as `i64` little-endian.
pub(crate) const META_CREATED_AT: &str = "created_at";
/// `meta` key: the organisation's public key (32 bytes), to detect a swapped key file.
pub(crate) const META_ORG_KEY: &str = "org_public_key";

/// The schema version this build writes and the newest it can read.
pub const SCHEMA_VERSION: u32 = 1;

/// Encoding version of [`DocRecord`]; bumped only together with [`SCHEMA_VERSION`].
const RECORD_V1: u8 = 1;

/// Most heads a [`DocRecord`] holds. Real documents have a handful; the bound
/// keeps a damaged count from allocating without limit, and writers store
/// more heads than this as none ("unknown") so every record stays readable.
pub const MAX_HEADS: usize = 4096;

/// Largest sync state accepted, far above what Automerge's `State::encode` produces.
pub const MAX_SYNC_STATE_BYTES: usize = 1024 * 1024;

/// A document's row in `documents`: its description plus counters kept in step
/// with `snapshots` and `changes`, so callers can decide when to compact
/// without reading the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DocRecord {
    pub info: DocInfo,
    /// Number of changes folded into the snapshot.
    pub snapshot_changes: u64,
    /// Number of changes in the log (sum of the counts given to `append_changes`).
    pub log_changes: u64,
    /// Total bytes in the log.
    pub log_bytes: u64,
    /// Sequence number the next log entry gets; never reused, even after compaction.
    pub next_seq: u64,
    /// Automerge change hashes of the document's current heads, as last set by
    /// the writer; empty when unknown. Lets sync compare documents without loading them.
    pub heads: Vec<[u8; 32]>,
}

impl DocRecord {
    /// A fresh record for a document whose whole state is in its snapshot;
    /// its heads are unknown until the writer sets them.
    pub(crate) fn new(info: DocInfo, snapshot_changes: u64, next_seq: u64) -> DocRecord {
        DocRecord {
            info,
            snapshot_changes,
            log_changes: 0,
            log_bytes: 0,
            next_seq,
            heads: Vec::new(),
        }
    }

    /// Encodes the record. Callers keep `heads` within [`MAX_HEADS`] (the
    /// batch does), otherwise the record could not be decoded again.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let capacity = 72 + self.info.kind.len() + self.info.title.len() + 32 * self.heads.len();
        let mut out = Vec::with_capacity(capacity);
        out.push(RECORD_V1);
        out.extend_from_slice(&self.info.partnership);
        put_str(&mut out, &self.info.kind);
        put_str(&mut out, &self.info.title);
        for n in [
            self.snapshot_changes,
            self.log_changes,
            self.log_bytes,
            self.next_seq,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let count = u32::try_from(self.heads.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for head in self.heads.iter().take(count as usize) {
            out.extend_from_slice(head);
        }
        out
    }

    /// Decodes a record; the error text says what is malformed.
    pub(crate) fn decode(bytes: &[u8]) -> Result<DocRecord, String> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != RECORD_V1 {
            return Err(format!("document record has unknown version {version}"));
        }
        let record = DocRecord {
            info: DocInfo {
                partnership: r.array()?,
                kind: r.string()?,
                title: r.string()?,
            },
            snapshot_changes: r.u64()?,
            log_changes: r.u64()?,
            log_bytes: r.u64()?,
            next_seq: r.u64()?,
            heads: r.heads()?,
        };
        if !r.0.is_empty() {
            return Err("document record has trailing bytes".to_owned());
        }
        Ok(record)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Kind and title are short human text; a u32 length is ample.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("document record is truncated".to_owned());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A u32 count then that many 32-byte hashes; the count is checked
    /// against [`MAX_HEADS`] and the remaining bytes before allocating.
    fn heads(&mut self) -> Result<Vec<[u8; 32]>, String> {
        let count = self.u32()? as usize;
        if count > MAX_HEADS {
            return Err(format!(
                "document record claims {count} heads (at most {MAX_HEADS})"
            ));
        }
        let bytes = self.take(count * 32)?;
        Ok(bytes
            .chunks_exact(32)
            .map(|chunk| {
                let mut head = [0u8; 32];
                head.copy_from_slice(chunk);
                head
            })
            .collect())
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| "document record has non-UTF-8 text".to_owned())
    }
}

/// Decodes the `schema_version` value of `meta`.
pub(crate) fn decode_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Lowercase hex of a document id, for error messages.
pub(crate) fn doc_hex(id: &DocKey) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DocRecord {
        DocRecord {
            info: DocInfo {
                partnership: [7; 16],
                kind: "agreement".into(),
                title: "Data sharing ✓".into(),
            },
            snapshot_changes: 3,
            log_changes: 4,
            log_bytes: 500,
            next_seq: 9,
            heads: vec![[0xAA; 32], [0x55; 32]],
        }
    }

    #[test]
    fn record_round_trips() {
        let rec = record();
        assert_eq!(DocRecord::decode(&rec.encode()).unwrap(), rec);
    }

    #[test]
    fn every_truncation_and_bad_version_is_an_error() {
        let bytes = record().encode();
        for len in 0..bytes.len() {
            assert!(DocRecord::decode(&bytes[..len]).is_err(), "len {len}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(DocRecord::decode(&extra).is_err());
        let mut wrong = bytes;
        wrong[0] = 2;
        assert!(DocRecord::decode(&wrong).is_err());
    }

    #[test]
    fn records_without_heads_round_trip() {
        let rec = DocRecord::new(record().info, 1, 1);
        assert_eq!(DocRecord::decode(&rec.encode()).unwrap(), rec);
    }

    #[test]
    fn a_head_count_above_the_bound_is_rejected_before_allocating() {
        let mut rec = record();
        rec.heads.clear();
        let mut bytes = rec.encode();
        let count_at = bytes.len() - 4;
        for count in [MAX_HEADS as u32 + 1, u32::MAX] {
            bytes[count_at..].copy_from_slice(&count.to_le_bytes());
            let err = DocRecord::decode(&bytes).unwrap_err();
            assert!(err.contains("heads"), "{err}");
        }
        // At the bound it is read as a count, and fails only for lack of bytes.
        bytes[count_at..].copy_from_slice(&(MAX_HEADS as u32).to_le_bytes());
        assert_eq!(
            DocRecord::decode(&bytes).unwrap_err(),
            "document record is truncated"
        );
    }
}
