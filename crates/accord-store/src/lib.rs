//! The durable local replica: the only crate that opens redb files.
//!
//! A data folder (chosen by the CLI, never here) holds:
//!
//! | file           | what                                                         |
//! |----------------|--------------------------------------------------------------|
//! | `replica.redb` | the redb database, layout below                              |
//! | `org.key`      | the organisation's secret seed (`accord-org-key v1\n<hex>\n`, mode 0600) |
//! | `accord.lock`  | exclusive advisory lock + holder's pid: one live [`Replica`] per folder |
//!
//! # Tables
//!
//! | table       | key                 | value                                                   |
//! |-------------|---------------------|---------------------------------------------------------|
//! | `meta`      | `&str`              | `schema_version` (u32 LE), `org_name` (UTF-8), `created_at` (i64 LE unix secs), `org_public_key` (32 bytes) |
//! | `documents` | [`DocKey`]          | record v1: `1u8`, partnership (16 bytes), kind and title (u32 LE length + UTF-8), then u64 LE `snapshot_changes`, `log_changes`, `log_bytes`, `next_seq`, then the heads: u32 LE count (at most [`MAX_HEADS`]) + 32-byte change hashes |
//! | `snapshots` | `(DocKey, u32 chunk)` | latest `AutoCommit::save` of the document, in chunks of at most 16 KiB − 128 B numbered from 0 (always at least one) |
//! | `changes`   | `(DocKey, u64 seq)` | one log entry: raw Automerge change chunks, concatenated |
//! | `settings`  | `&str`              | small values for later features (peers etc.)             |
//! | `sync_states` | `(DocKey, [u8; 32] peer org key)` | encoded `automerge::sync::State` (opaque here, at most [`MAX_SYNC_STATE_BYTES`]) |
//!
//! A document is its snapshot plus its log in `seq` order; one range scan of
//! `snapshots` loads the snapshot and one of `changes` the log. Snapshots are
//! chunked because redb gives a value larger than a page a power-of-two run of
//! pages: one 130 KB value would take 256 KiB of file. Sequence numbers only grow (`next_seq`), even across
//! compactions, so an entry's key is never reused. A compaction names the
//! `next_seq` it expects and is skipped if another writer appended meanwhile,
//! so it never deletes an entry its snapshot lacks.
//!
//! Each record also carries the document's heads, kept current by the writer
//! (`set_heads`), so [`Replica::document_index`] tells sync what every
//! document's state is with one scan of `documents`.
//!
//! # Durability
//!
//! [`Replica::commit`] applies a [`WriteBatch`] in one write transaction with
//! `Durability::Immediate`. [`CommitQueue`] groups many batches into one such
//! transaction so that keystrokes do not each wait for an fsync.
//!
//! # Damaged and foreign files
//!
//! Opening refuses, before anything writes: a file that is not redb
//! ([`StoreError::NotAReplica`]), a redb file without Accord's `meta`, a newer
//! schema ([`StoreError::TooNew`]), a missing or damaged key file. A file
//! that was not closed cleanly is recovered by redb, which verifies every page
//! checksum and falls back to the last intact commit; a cleanly closed file is
//! trusted on open (reading and rewriting the whole file on every open would
//! cost more than the rest of the open), and [`Replica::verify`] checks it in
//! full on demand. Panics inside redb are turned into [`StoreError::Corrupt`],
//! and Automerge verifies every chunk it loads. The one write that can precede
//! the schema check is redb's own crash recovery, needed when the file was not
//! closed cleanly (a read-only handle cannot read such a file).

#![warn(missing_docs)]

mod batch;
mod commit_queue;
mod db_file;
mod error;
mod key_file;
mod lock;
mod replica;
mod tables;

#[cfg(test)]
mod tests;

pub use batch::WriteBatch;
pub use commit_queue::{CommitQueue, MAX_PENDING_BYTES, Ticket};
pub use error::StoreError;
pub use replica::{DocumentScan, IndexEntry, Inspection, Repair, Replica, StoredDocument};
pub use tables::{MAX_HEADS, MAX_RECORD_BYTES, MAX_SYNC_STATE_BYTES, SCHEMA_VERSION};

/// A document's raw 128-bit id; roster documents use their partnership's id.
///
/// Raw bytes (not a model type) so this crate does not depend on the model.
pub type DocKey = [u8; 16];

/// What a document is, stored beside its content so listing documents does
/// not require loading any Automerge data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DocInfo {
    /// The partnership the document belongs to (its own id for a roster).
    pub partnership: DocKey,
    /// The document's kind, as named by the model crate (e.g. "agreement", "roster").
    pub kind: String,
    /// A human title, for listings.
    pub title: String,
}
