//! An organisation's workspace: its partnerships and their agreements,
//! read and written through the durable replica.
//!
//! This is where the pure model meets storage. Every write follows one
//! path: load the document (snapshot + change log), apply a model
//! operation, commit one Automerge change, and persist that change (and any
//! related roster change) in one durable redb transaction before returning.
//! When a call returns `Ok`, the edit survives `kill -9`.

mod audit;
mod error;
mod export;
mod invite;
mod live;
mod persist;
mod repair;
mod resolve;
mod settings;
mod trust;
mod workspace;

pub use audit::{
    DocDiff, ExportCheck, NamedSpan, OrgAudit, Piece, SIGNOFF_HEADING, SectionDiff, day_start,
};
pub use error::WorkspaceError;
pub use export::comments_markdown;
pub use invite::Invite;
pub use live::LiveDocument;
pub use persist::{CommitListener, Committed, CompactionPolicy};
pub use repair::{DocNote, PeerSync, RepairOptions, RepairReport, Resync, repair};
pub use settings::{PeerConfig, normalise_url};
pub use trust::{CommentView, MemberStatus, SignOffState};
pub use workspace::{DocumentRef, OrgInfo, Workspace};

/// Seconds since the Unix epoch from the system clock.
///
/// Commit times are claims made by the writer's clock, shown in history but
/// never used to order changes (Automerge orders by causality).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], WorkspaceError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| WorkspaceError::Randomness(e.to_string()))?;
    Ok(buf)
}
