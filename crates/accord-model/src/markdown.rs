//! Agreements as Markdown (and HTML) for people, and the editable Markdown
//! that `accord doc edit` opens, read back as a list of [`Edit`]s.
//!
//! # The editable form
//!
//! The editable file is the printable Markdown with invisible HTML-comment
//! marker lines, each alone on its line:
//!
//! ```text
//! <!-- accord:field PATH -->           a value: title, purpose, term.start,
//!                                      milestones.ID.due, roles.ORGHEX.responsibilities
//! <!-- accord:about KIND DOCID -->     which agreement the file edits
//! <!-- accord:section KEY -->          a section's heading and guidance
//! <!-- accord:item LIST ID -->         starts one list item's block
//! <!-- accord:org SECTION ORGHEX -->   starts one organisation's entry
//! <!-- accord:new LIST -->             a template for a new item (copyable)
//! <!-- accord:end -->                  the last line, so truncation shows
//! ```
//!
//! Rules, chosen so a file always reads back to exactly one meaning:
//!
//! * A marker line is any line that, trimmed, starts with `<!--` and then
//!   `accord:`. A value line that would look like one is written with a
//!   backslash in front (one more backslash if it already had some), and
//!   the backslash is removed when reading, so any text round-trips.
//! * A field's value is every line from its marker to the next marker.
//!   Most fields start with a fixed head (`# ` for the title, `### 2.` for
//!   an item's first field, `**Label:**` otherwise) with the value's first
//!   line after it; text sections have no head. The head is required.
//! * Whitespace-only lines around a value are dropped; everything between is
//!   kept byte for byte. Windows line endings become `\n`. A field counts as
//!   unchanged if it differs only in those and in trailing spaces on lines
//!   (editors strip them), so a save without edits yields no [`Edit`].
//! * Scalars (dates, days, status, organisations) are one line, written as
//!   the plain value; organisations by member name; empty means unset.
//! * Lines under structural markers are fixed headings and guidance: any
//!   other text there is an error rather than silently lost.
//! * An item whose `accord:item` block is gone is removed; a filled-in
//!   `accord:new` block is added. Every other marker must still be there,
//!   once, in its block.

mod html;
mod layout;
mod parse;
mod render;

use std::fmt;

use automerge::transaction::Transactable;

use crate::view::AgreementView;
use crate::{Agreement, ModelError, RosterView};

/// How to render an agreement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Show each empty section's prompt as guidance, in italics.
    pub prompts: bool,
    /// Add the markers and notes that let [`parse_edit`] read the file back.
    pub editable: bool,
}

/// One change read from an edited file, in the terms of [`Agreement`]'s
/// write operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// [`Agreement::set`]: the new stored value (organisations as key hex).
    Set { path: String, value: String },
    /// [`Agreement::add_item`]: the fields that were filled in.
    Add {
        list: String,
        values: Vec<(String, String)>,
    },
    /// [`Agreement::remove_item`], by item id: `milestones.<id>`.
    Remove { path: String },
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::Set { path, .. } => write!(f, "changed {path}"),
            Edit::Add { list, .. } => write!(f, "added an item to {list}"),
            Edit::Remove { path } => write!(f, "removed {path}"),
        }
    }
}

/// The agreement as Markdown: printable, or editable with markers.
pub fn render(view: &AgreementView, roster: &RosterView, options: &RenderOptions) -> String {
    if options.editable {
        render::editable(view, roster, options.prompts)
    } else {
        render::printable(view, roster, options.prompts)
    }
}

/// The agreement as a standalone printable HTML page (`editable` is ignored).
pub fn render_html(view: &AgreementView, roster: &RosterView, options: &RenderOptions) -> String {
    html::page(view, roster, options.prompts)
}

/// Reads a file produced by [`render`] with `editable: true` (and then
/// edited) and returns what changed relative to `original`, the view it was
/// rendered from. Anything it cannot read unambiguously is a
/// [`ModelError::Markdown`] naming the line and what to fix.
pub fn parse_edit(
    original: &AgreementView,
    edited: &str,
    roster: &RosterView,
) -> Result<Vec<Edit>, ModelError> {
    parse::parse(original, edited, roster)
}

/// Applies edits from [`parse_edit`]: sets, then additions, then removals
/// (by item id, so earlier edits never shift which item is meant). If one
/// fails and nothing else was pending, the partial edit is rolled back.
pub fn apply_edits(
    agreement: &mut Agreement,
    edits: &[Edit],
    roster: &RosterView,
) -> Result<(), ModelError> {
    let clean = agreement.doc().pending_ops() == 0;
    let result = apply_in_order(agreement, edits, roster);
    if result.is_err() && clean {
        agreement.doc_mut().rollback();
    }
    result
}

fn apply_in_order(
    agreement: &mut Agreement,
    edits: &[Edit],
    roster: &RosterView,
) -> Result<(), ModelError> {
    for edit in edits {
        if let Edit::Set { path, value } = edit {
            agreement.set(path, value, roster)?;
        }
    }
    for edit in edits {
        if let Edit::Add { list, values } = edit {
            agreement.add_item(list, values, roster)?;
        }
    }
    for edit in edits {
        if let Edit::Remove { path } = edit {
            agreement.remove_item(path)?;
        }
    }
    Ok(())
}
