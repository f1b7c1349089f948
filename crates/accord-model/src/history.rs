//! What each change did, in words: which fields, how much text.
//!
//! Summaries are computed from the operations themselves (by diffing the
//! document before and after each change), not from the commit message,
//! which is only the writer's claim.

use std::collections::BTreeMap;

use accord_identity::OrgKey;
use automerge::{AutoCommit, Patch, PatchAction, Prop};

use crate::schema::{DocKind, Shape};
use crate::trust::{Attestation, Candidate, covered};

/// What one change did to one top-level field.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    pub field: String,
    pub chars_added: usize,
    pub chars_removed: usize,
    pub items_added: usize,
    pub items_removed: usize,
    pub values_set: usize,
}

/// Per-field effects of one change, in field order.
pub type ChangeSummary = Vec<FieldChange>;

/// One change in a document's history.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HistoryEntry {
    /// The Automerge change hash (hex): the change's permanent name.
    pub hash: String,
    /// Seconds since the epoch, as claimed by the writer's clock.
    pub time: i64,
    /// The organisation whose key starts the change's actor id, if any.
    pub org: Option<OrgKey>,
    pub actor: String,
    pub seq: u64,
    pub message: Option<String>,
    pub fields: ChangeSummary,
    /// Whether a valid signature of `org` covers this change (see
    /// [`crate::trust`]). Unverified entries are shown as such, never as trusted.
    pub verified: bool,
}

impl FieldChange {
    /// "+12 −3 chars, 1 item added" style text.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.chars_added > 0 || self.chars_removed > 0 {
            parts.push(format!(
                "+{} -{} chars",
                self.chars_added, self.chars_removed
            ));
        }
        if self.items_added > 0 {
            parts.push(plural(self.items_added, "item added", "items added"));
        }
        if self.items_removed > 0 {
            parts.push(plural(self.items_removed, "item removed", "items removed"));
        }
        if self.values_set > 0 && parts.is_empty() {
            parts.push("set".to_owned());
        }
        parts.join(", ")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Every change of `doc` in causal order, each with what it changed, and
/// whether one of `attestations` (already signature-checked) covers it.
pub fn history(doc: &mut AutoCommit, attestations: &[Attestation]) -> Vec<HistoryEntry> {
    let changes = doc.get_changes(&[]);
    let candidates: Vec<Candidate> = changes.iter().map(Candidate::of_change).collect();
    let verified = covered(&candidates, attestations);
    changes
        .iter()
        .map(|change| {
            let patches = doc.diff(change.deps(), &[change.hash()]);
            HistoryEntry {
                hash: change.hash().to_string(),
                time: change.timestamp(),
                org: OrgKey::from_actor_bytes(change.actor_id().to_bytes()),
                actor: change.actor_id().to_hex_string(),
                seq: change.seq(),
                message: change
                    .message()
                    .map(|m| crate::trust::claim::human(m).to_owned())
                    .filter(|m| !m.is_empty()),
                fields: summarise(&patches),
                verified: verified.contains(&change.hash()),
            }
        })
        .collect()
}

/// Folds patches into per-field counts. A list insert or delete directly
/// under a top-level field counts as items; anything inside text counts
/// characters.
fn summarise(patches: &[Patch]) -> ChangeSummary {
    let mut fields: BTreeMap<String, FieldChange> = BTreeMap::new();
    for patch in patches {
        let Some(field) = top_level_key(patch) else {
            continue;
        };
        if field == "accord" {
            continue;
        }
        let entry = fields.entry(field.clone()).or_insert_with(|| FieldChange {
            field,
            ..Default::default()
        });
        let depth = patch.path.len();
        match &patch.action {
            PatchAction::SpliceText { value, .. } => {
                entry.chars_added += value.make_string().chars().count()
            }
            PatchAction::DeleteSeq { length, .. } if depth == 1 && is_list_section(patch) => {
                entry.items_removed += length
            }
            PatchAction::DeleteSeq { length, .. } => entry.chars_removed += length,
            PatchAction::Insert { values, .. } if depth == 1 => entry.items_added += values.len(),
            PatchAction::Insert { .. }
            | PatchAction::PutMap { .. }
            | PatchAction::PutSeq { .. }
            | PatchAction::DeleteMap { .. }
            | PatchAction::Increment { .. }
            | PatchAction::Conflict { .. } => entry.values_set += 1,
            PatchAction::Mark { .. } => {}
        }
    }
    fields.into_values().collect()
}

/// Text sections sit directly under the root too, so a delete at depth one
/// removes items only when the section is a list in the schema.
fn is_list_section(patch: &Patch) -> bool {
    let key = top_level_key(patch).unwrap_or_default();
    DocKind::ALL
        .iter()
        .any(|kind| matches!(kind.section(&key).map(|s| &s.shape), Some(Shape::List(_))))
}

fn top_level_key(patch: &Patch) -> Option<String> {
    match patch.path.first() {
        Some((_, Prop::Map(key))) => Some(key.clone()),
        Some((_, Prop::Seq(_))) => None,
        None => match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key.clone()),
            _ => None,
        },
    }
}
