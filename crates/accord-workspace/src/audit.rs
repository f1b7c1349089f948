//! Reading the record: verified history, blame, differences between
//! versions, the per-organisation audit, and checking an exported copy.

use std::collections::{BTreeMap, BTreeSet};

use accord_identity::OrgKey;
use accord_model::automerge::ChangeHash;
use accord_model::markdown::{self, RenderOptions};
use accord_model::trust::{Attestation, RefusalRecord};
use accord_model::{BlameSpan, DocId, Notes, Role, SignOff, blame_text, join_heads, parse_heads};

use crate::workspace::Workspace;
use crate::{WorkspaceError, unix_now};

/// A span of text with the name of the organisation that wrote it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NamedSpan {
    #[serde(flatten)]
    pub span: BlameSpan,
    pub org_name: String,
}

/// One piece of a word-level difference.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Piece {
    Same(String),
    Added(String),
    Removed(String),
}

/// The differences in one section of an agreement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SectionDiff {
    pub section: String,
    pub pieces: Vec<Piece>,
}

/// Two versions compared.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DocDiff {
    pub from: String,
    pub to: String,
    /// Only the sections that differ.
    pub sections: Vec<SectionDiff>,
}

/// One organisation's footprint in a partnership.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrgAudit {
    pub name: String,
    pub key: OrgKey,
    pub role: Option<Role>,
    pub changes: u64,
    pub unverified_changes: u64,
    pub documents_touched: Vec<String>,
    pub last_activity: Option<i64>,
    pub signoffs: u64,
    /// Changes this replica refused that name this organisation as author.
    pub refusals: u64,
}

/// What checking an exported copy found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportCheck {
    pub document: String,
    pub version: String,
    /// The copy's text is exactly what this replica holds at that version.
    pub text_matches: bool,
    /// Each sign-off in the copy: who, and whether its signature verifies
    /// and matches a sign-off this replica holds.
    pub signoffs: Vec<(String, bool)>,
}

const RECORD_START: &str = "<!-- accord-record";
const RECORD_END: &str = "-->";

impl Workspace {
    /// The attestations stored for `doc` whose signatures verify.
    pub fn attestations(&self, doc: DocId) -> Result<Vec<Attestation>, WorkspaceError> {
        Ok(self
            .replica()
            .attestations(doc.as_bytes())?
            .into_iter()
            .filter_map(|(_, bytes)| Attestation::from_bytes(&bytes).ok())
            .filter(|a| a.doc == doc && a.verify().is_ok())
            .collect())
    }

    /// The text of `field`, attributed span by span to the organisations that wrote it.
    pub fn blame(&self, selector: &str, field: &str) -> Result<Vec<NamedSpan>, WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.display_roster(doc.partnership)?;
        let (mut agreement, _) = self.load_agreement(doc.id)?;
        let text = agreement.text_obj(field, &roster)?;
        Ok(blame_text(agreement.doc(), &text)
            .into_iter()
            .map(|span| NamedSpan {
                org_name: span
                    .org
                    .map(|k| roster.display_name(&k))
                    .unwrap_or_else(|| "unknown".to_owned()),
                span,
            })
            .collect())
    }

    /// Word-level differences between two versions of an agreement. A
    /// version is `current` (the default), a history position (`3` = after
    /// the third change), a date (`2026-11-01`, the end of that day), or a
    /// member's name or fingerprint (its latest sign-off).
    pub fn diff(
        &self,
        selector: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<DocDiff, WorkspaceError> {
        let from = from.unwrap_or("1");
        let to = to.unwrap_or("current");
        let old = self.version(selector, from)?;
        let new = self.version(selector, to)?;
        let render = |heads: &[ChangeHash]| -> Result<String, WorkspaceError> {
            let (view, roster) = self.view_at(selector, heads)?;
            Ok(markdown::render(&view, &roster, &plain()))
        };
        let (old_text, new_text) = (render(&old)?, render(&new)?);
        Ok(DocDiff {
            from: from.to_owned(),
            to: to.to_owned(),
            sections: diff_sections(&old_text, &new_text),
        })
    }

    /// The heads named by a version selector (see [`diff`](Self::diff)).
    pub fn version(
        &self,
        selector: &str,
        version: &str,
    ) -> Result<Vec<ChangeHash>, WorkspaceError> {
        let version = version.trim();
        let (doc, roster, entries) = self.history(selector)?;
        if version.is_empty() || version.eq_ignore_ascii_case("current") {
            return Ok(prefix_heads(&entries, entries.len()));
        }
        if let Ok(n) = version.parse::<usize>() {
            if n == 0 || n > entries.len() {
                return Err(WorkspaceError::NoSuchVersion(format!(
                    "{version}: the history has positions 1 to {}",
                    entries.len()
                )));
            }
            return Ok(prefix_heads(&entries, n));
        }
        if let Ok(date) = version.parse::<jiff::civil::Date>() {
            let end = days_from_civil(date) * 86_400 + 86_399;
            let n = entries.iter().take_while(|e| e.time <= end).count();
            if n == 0 {
                return Err(WorkspaceError::NoSuchVersion(format!(
                    "{version}: the agreement did not exist yet"
                )));
            }
            return Ok(prefix_heads(&entries, n));
        }
        let member = roster
            .resolve_member(version)
            .map_err(|_| WorkspaceError::NoSuchVersion(version.to_owned()))?;
        self.signoffs(doc.partnership, doc.id, &roster)?
            .into_iter()
            .filter(|s| s.org == member.key)
            .max_by_key(|s| s.at)
            .map(|s| s.heads)
            .ok_or_else(|| {
                WorkspaceError::NoSuchVersion(format!(
                    "{} has not signed this agreement",
                    member.name
                ))
            })
    }

    /// Per organisation: changes made, documents touched, last activity,
    /// sign-offs given and refusals recorded, across a partnership.
    pub fn audit(&self, partnership: &str) -> Result<Vec<OrgAudit>, WorkspaceError> {
        let roster = self.partnership(partnership)?;
        let roster = self.display_roster(roster.id)?;
        let mut rows: BTreeMap<OrgKey, OrgAudit> = BTreeMap::new();
        let mut touched: BTreeMap<OrgKey, BTreeSet<String>> = BTreeMap::new();
        let row = |rows: &mut BTreeMap<OrgKey, OrgAudit>, key: OrgKey| -> OrgAudit {
            rows.remove(&key).unwrap_or_else(|| OrgAudit {
                name: roster.display_name(&key),
                key,
                role: roster.member(&key).map(|m| m.role),
                changes: 0,
                unverified_changes: 0,
                documents_touched: Vec::new(),
                last_activity: None,
                signoffs: 0,
                refusals: 0,
            })
        };
        for m in &roster.members {
            let r = row(&mut rows, m.key);
            rows.insert(m.key, r);
        }
        for entry in &roster.documents {
            let (_, _, history) = self.history(&entry.id.to_string())?;
            for e in history {
                let Some(org) = e.org else { continue };
                let mut r = row(&mut rows, org);
                r.changes += 1;
                r.unverified_changes += u64::from(!e.verified);
                r.last_activity = r.last_activity.max(Some(e.time));
                rows.insert(org, r);
                touched.entry(org).or_default().insert(entry.title.clone());
            }
            for s in self.signoffs(roster.id, entry.id, &roster)? {
                let mut r = row(&mut rows, s.org);
                r.signoffs += 1;
                r.last_activity = r.last_activity.max(Some(s.at));
                rows.insert(s.org, r);
            }
            for (_, record) in self.replica().refusals(entry.id.as_bytes())? {
                let Some(author) = RefusalRecord::from_bytes(&record).and_then(|r| r.author) else {
                    continue;
                };
                let mut r = row(&mut rows, author);
                r.refusals += 1;
                rows.insert(author, r);
            }
        }
        for m in &roster.members {
            let notes = Notes::doc_id(roster.id, &m.key);
            for (_, record) in self.replica().refusals(notes.as_bytes())? {
                if let Some(author) = RefusalRecord::from_bytes(&record).and_then(|r| r.author) {
                    let mut r = row(&mut rows, author);
                    r.refusals += 1;
                    rows.insert(author, r);
                }
            }
        }
        Ok(rows
            .into_values()
            .map(|mut r| {
                r.documents_touched = touched
                    .remove(&r.key)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                r
            })
            .collect())
    }

    /// The machine-readable record appended to an exported copy: the
    /// version exported and every valid sign-off, so the copy can be
    /// checked later against any partner's replica (`accord verify`).
    pub fn export_record(&self, selector: &str) -> Result<String, WorkspaceError> {
        let doc = self.document(selector)?;
        let roster = self.display_roster(doc.partnership)?;
        let (mut agreement, _) = self.load_agreement(doc.id)?;
        let heads = agreement.doc_mut().get_heads();
        let mut out = format!(
            "{RECORD_START}\npartnership: {}\ndocument: {}\nversion: {}\nexported: {}\n",
            doc.partnership,
            doc.id,
            join_heads(&heads),
            unix_now()
        );
        for s in self.signoffs(doc.partnership, doc.id, &roster)? {
            out.push_str(&format!(
                "signoff: {} {} {} {} {}\n",
                s.org,
                s.heads_text(),
                s.at,
                data_encoding::HEXLOWER.encode(&s.signature),
                data_encoding::BASE64URL_NOPAD.encode(s.statement.as_bytes())
            ));
        }
        out.push_str(RECORD_END);
        out.push('\n');
        Ok(out)
    }

    /// Checks an exported Markdown copy against this replica: is its text
    /// exactly the agreement at the version it names, and do its sign-offs verify?
    pub fn verify_export(&self, text: &str) -> Result<ExportCheck, WorkspaceError> {
        let bad = |why: &str| WorkspaceError::BadExport(why.to_owned());
        let start = text
            .rfind(RECORD_START)
            .ok_or_else(|| bad("it has no accord record"))?;
        let (body, record) = text.split_at(start);
        let mut fields: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in record.lines().skip(1) {
            if let Some((key, value)) = line.split_once(": ") {
                fields.entry(key).or_default().push(value.trim());
            }
        }
        let one = |key: &str| {
            fields
                .get(key)
                .and_then(|v| v.first().copied())
                .ok_or_else(|| bad(key))
        };
        let partnership = one("partnership")?;
        let doc_id: DocId = one("document")?.parse()?;
        let version = parse_heads(one("version")?).ok_or_else(|| bad("version"))?;
        let selector = doc_id.to_string();
        let doc = self.document(&selector)?;
        if doc.partnership.to_string() != partnership {
            return Err(bad("it names another partnership"));
        }
        let (view, roster) = self.view_at(&selector, &version)?;
        let options = plain();
        let expected = markdown::render(&view, &roster, &options);
        let text_matches = strip_signoff_block(body).trim_end() == expected.trim_end();
        let held = self.signoffs(doc.partnership, doc.id, &roster)?;
        let signoffs = fields
            .get("signoff")
            .map(|lines| {
                lines
                    .iter()
                    .map(|line| check_signoff_line(line, doc.partnership, doc.id, &held, &roster))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ExportCheck {
            document: doc.title,
            version: join_heads(&version),
            text_matches,
            signoffs,
        })
    }
}

/// Unix seconds at the start (UTC) of a `YYYY-MM-DD` day, or `None` if it is not a date.
pub fn day_start(text: &str) -> Option<i64> {
    let date: jiff::civil::Date = text.trim().parse().ok()?;
    Some(days_from_civil(date) * 86_400)
}

/// Days since 1970-01-01 of a calendar date (UTC), by Howard Hinnant's algorithm.
fn days_from_civil(date: jiff::civil::Date) -> i64 {
    let (y, m, d) = (
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn plain() -> RenderOptions {
    RenderOptions {
        prompts: false,
        editable: false,
    }
}

/// The human-readable sign-off section written before the record.
pub const SIGNOFF_HEADING: &str = "## Sign-off";

fn strip_signoff_block(body: &str) -> &str {
    match body.rfind(SIGNOFF_HEADING) {
        Some(at) => &body[..at],
        None => body,
    }
}

fn check_signoff_line(
    line: &str,
    p: accord_model::PartnershipId,
    doc: DocId,
    held: &[SignOff],
    roster: &accord_model::RosterView,
) -> (String, bool) {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let parsed = (|| {
        let [org, heads, at, sig, statement] = parts.as_slice() else {
            return None;
        };
        let signoff = SignOff {
            org: org.parse().ok()?,
            partnership: p,
            doc,
            heads: parse_heads(heads)?,
            at: at.parse().ok()?,
            signature: data_encoding::HEXLOWER
                .decode(sig.as_bytes())
                .ok()?
                .try_into()
                .ok()?,
            statement: String::from_utf8(
                data_encoding::BASE64URL_NOPAD
                    .decode(statement.as_bytes())
                    .ok()?,
            )
            .ok()?,
        };
        Some(signoff)
    })();
    match parsed {
        Some(s) => {
            let ok = s.verify() && held.contains(&s);
            (roster.display_name(&s.org), ok)
        }
        None => ("an unreadable sign-off line".to_owned(), false),
    }
}

/// A version holding exactly the first `n` entries of a causally ordered
/// history: a prefix is causally closed, so naming all its changes names
/// that version (Automerge reads a version at any set of changes).
fn prefix_heads(entries: &[accord_model::HistoryEntry], n: usize) -> Vec<ChangeHash> {
    entries[..n]
        .iter()
        .filter_map(|e| e.hash.parse::<ChangeHash>().ok())
        .collect()
}

/// Splits two Markdown renderings into `## ` sections and word-diffs the
/// ones that differ.
fn diff_sections(old: &str, new: &str) -> Vec<SectionDiff> {
    let (old, new) = (sections(old), sections(new));
    let mut names: Vec<&String> = new.iter().map(|(n, _)| n).collect();
    for (n, _) in &old {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let find = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    names
        .into_iter()
        .filter_map(|name| {
            let (a, b) = (find(&old, name), find(&new, name));
            if a == b {
                return None;
            }
            let pieces = similar::TextDiff::from_words(&a, &b)
                .iter_all_changes()
                .map(|c| match c.tag() {
                    similar::ChangeTag::Equal => Piece::Same(c.value().to_owned()),
                    similar::ChangeTag::Insert => Piece::Added(c.value().to_owned()),
                    similar::ChangeTag::Delete => Piece::Removed(c.value().to_owned()),
                })
                .collect();
            Some(SectionDiff {
                section: name.clone(),
                pieces: merge_pieces(pieces),
            })
        })
        .collect()
}

fn merge_pieces(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for p in pieces {
        match (out.last_mut(), p) {
            (Some(Piece::Same(a)), Piece::Same(b)) => a.push_str(&b),
            (Some(Piece::Added(a)), Piece::Added(b)) => a.push_str(&b),
            (Some(Piece::Removed(a)), Piece::Removed(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}

fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![("(title)".to_owned(), String::new())];
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            out.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(jiff::civil::date(1970, 1, 1)), 0);
        assert_eq!(days_from_civil(jiff::civil::date(2000, 3, 1)), 11_017);
        assert_eq!(days_from_civil(jiff::civil::date(2026, 11, 23)), 20_780);
    }

    #[test]
    fn only_changed_sections_are_diffed_by_word() {
        let old = "# T\n## Purpose\nWe reduce waste.\n## Review\nYearly.\n";
        let new = "# T\n## Purpose\nWe reduce food waste.\n## Review\nYearly.\n";
        let diff = diff_sections(old, new);
        assert_eq!(diff.len(), 1);
        assert_eq!(diff[0].section, "Purpose");
        assert!(
            diff[0].pieces.contains(&Piece::Added("food ".into())),
            "{:?}",
            diff[0].pieces
        );
    }
}
