//! The partnership domain on Automerge, with no IO.
//!
//! A partnership is a [`Roster`] document (members, roles, the catalogue of
//! agreements) plus one [`Agreement`] document per agreement. Both are plain
//! Automerge documents whose layout is described by data in [`schema`], so
//! any Automerge implementation can read an exported file.
//!
//! Callers pass in everything that would make this crate impure: the actor
//! id, the current time, and random bytes. Every edit ends in
//! [`Agreement::commit`] / [`Roster::commit`], which return the raw bytes of
//! the new change for the caller to persist.

mod agreement;
mod blame;
mod document;
mod error;
mod history;
mod ids;
pub mod markdown;
mod notes;
mod path;
mod roster;
pub mod schema;
mod template;
mod text_diff;
pub mod trust;
mod view;

pub use agreement::Agreement;
pub use blame::{BlameSpan, blame_text};
pub use document::{CommittedChange, load_document, load_stored, new_document_actor};
pub use error::ModelError;
pub use history::{ChangeSummary, FieldChange, HistoryEntry, history};
pub use ids::{DocId, PartnershipId};
pub use notes::{Comment, Notes, SignOff, join_heads, parse_heads};
pub use path::{ItemRef, Target, parse_path};
pub use roster::{CatalogueEntry, Member, Role, Roster, RosterView};
pub use schema::{DocKind, ValueType};
pub use view::{AgreementView, EntryView, FieldView, ItemView, SectionContent, SectionView};

/// Re-exported so callers use the same Automerge version as the model.
pub use automerge;
