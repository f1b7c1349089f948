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
/// Version 2 added checksums to document records and settings; a version 1
/// file is read as it is and marked 2 when opened for writing.
pub const SCHEMA_VERSION: u32 = 2;
/// The oldest schema version this build reads.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

/// Encoding versions of [`DocRecord`]; bumped only together with [`SCHEMA_VERSION`].
/// Version 2 is version 1 followed by a CRC-32 of everything before it.
const RECORD_V1: u8 = 1;
const RECORD_V2: u8 = 2;

/// The first bytes of a checksummed setting value (version 2): these two,
/// then a CRC-32 of the value, then the value. 0xAC cannot start UTF-8 text,
/// and every setting version 1 wrote is JSON text, so the two never mix up.
const SEALED_SETTING: [u8; 2] = [0xAC, 0x5E];

/// `value` as schema version 2 stores a setting.
pub(crate) fn seal_setting(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.extend_from_slice(&SEALED_SETTING);
    out.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The value of a stored setting, checked against its checksum (version 2)
/// or as written (version 1). Redb does not checksum the pages of a cleanly
/// closed file as it reads them, so without this a flipped bit in a setting
/// would read back as a different setting.
pub(crate) fn open_setting(stored: &[u8]) -> Result<Vec<u8>, String> {
    let Some(rest) = stored.strip_prefix(&SEALED_SETTING) else {
        return Ok(stored.to_vec());
    };
    let (sum, value) = rest
        .split_first_chunk::<4>()
        .ok_or("a setting is truncated")?;
    if crc32fast::hash(value) != u32::from_le_bytes(*sum) {
        return Err("a setting does not match its checksum".to_owned());
    }
    Ok(value.to_vec())
}

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
        let mut out = Vec::with_capacity(capacity + 4);
        out.push(RECORD_V2);
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
        let sum = crc32fast::hash(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes a record; the error text says what is malformed.
    pub(crate) fn decode(bytes: &[u8]) -> Result<DocRecord, String> {
        let body = match bytes.first() {
            Some(&RECORD_V1) => bytes,
            Some(&RECORD_V2) => checked(bytes)?,
            Some(version) => return Err(format!("document record has unknown version {version}")),
            None => return Err("document record is truncated".to_owned()),
        };
        let mut r = Reader(&body[1..]);
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

/// A version 2 record without its checksum, if the checksum matches.
fn checked(bytes: &[u8]) -> Result<&[u8], String> {
    let (body, sum) = bytes
        .split_last_chunk::<4>()
        .ok_or("document record is truncated")?;
    if crc32fast::hash(body) != u32::from_le_bytes(*sum) {
        return Err("document record does not match its checksum".to_owned());
    }
    Ok(body)
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
        wrong[0] = 3;
        assert!(DocRecord::decode(&wrong).is_err());
    }

    /// `rec` as schema version 1 wrote it: no checksum.
    fn legacy(rec: &DocRecord) -> Vec<u8> {
        let mut bytes = rec.encode();
        bytes.truncate(bytes.len() - 4);
        bytes[0] = RECORD_V1;
        bytes
    }

    #[test]
    fn a_version_1_record_still_reads() {
        let rec = record();
        assert_eq!(DocRecord::decode(&legacy(&rec)).unwrap(), rec);
    }

    #[test]
    fn every_flipped_bit_of_a_record_is_an_error() {
        let bytes = record().encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(DocRecord::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn settings_are_sealed_and_every_flipped_bit_is_an_error() {
        let value = br#"[{"url":"ws://127.0.0.1:7000/sync"}]"#;
        let sealed = seal_setting(value);
        assert_eq!(open_setting(&sealed).unwrap(), value);
        for bit in 0..sealed.len() * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            // A flip in the marker makes it a version 1 value: it then reads
            // back with the marker and checksum bytes in it, never as `value`.
            if let Ok(read) = open_setting(&damaged) {
                assert_ne!(read, value, "bit {bit}");
            }
        }
        assert_eq!(
            open_setting(value).unwrap(),
            value,
            "version 1 values read as written"
        );
        assert!(open_setting(&sealed[..5]).is_err());
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
        let mut bytes = legacy(&rec);
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
