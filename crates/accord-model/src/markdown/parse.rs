//! Reading an edited file back as edits against the view it was rendered
//! from. The expected shape comes from the same [`layout`] the renderer
//! used, so anything unexpected is reported with its line, never guessed.

use std::collections::HashMap;
use std::fmt::Display;

use accord_identity::OrgKey;

use super::Edit;
use super::layout::{
    Block, Marker, Owner, Slot, is_marker_like, layout, parse_marker, same_text, shown_value,
    trim_blank_lines, unescape_line,
};
use crate::schema::{Field, ValueType, check_scalar};
use crate::view::{AgreementView, FieldView};
use crate::{ModelError, RosterView};

pub(super) fn parse(
    original: &AgreementView,
    edited: &str,
    roster: &RosterView,
) -> Result<Vec<Edit>, ModelError> {
    let text = edited
        .strip_prefix('\u{feff}')
        .unwrap_or(edited)
        .replace("\r\n", "\n");
    let blocks = split_blocks(&text)?;
    if blocks.len() == 1 {
        return Err(at(
            1,
            "there are no accord markers: this is not an Accord edit file, or its marker lines were deleted",
        ));
    }
    let expected = layout(original, roster);
    let mut reader = Reader::new(original, &expected, roster);
    for block in &blocks {
        reader.read(block)?;
    }
    reader.finish(text.split('\n').count())
}

/// A marker line (absent for the text before the first marker) and the
/// numbered lines up to the next marker.
struct RawBlock<'t> {
    marker: Option<(usize, Marker)>,
    body: Vec<(usize, &'t str)>,
}

fn split_blocks(text: &str) -> Result<Vec<RawBlock<'_>>, ModelError> {
    let mut blocks = vec![RawBlock {
        marker: None,
        body: Vec::new(),
    }];
    for (i, line) in text.split('\n').enumerate() {
        let number = i + 1;
        if is_marker_like(line) {
            let marker = parse_marker(line).map_err(|why| at(number, why))?;
            blocks.push(RawBlock {
                marker: Some((number, marker)),
                body: Vec::new(),
            });
        } else if let Some(block) = blocks.last_mut() {
            block.body.push((number, line));
        }
    }
    Ok(blocks)
}

/// A filled-in (or still empty) copy of a list's template block.
struct NewItem {
    list: String,
    values: Vec<(String, String, usize)>,
}

struct Reader<'a> {
    original: &'a AgreementView,
    roster: &'a RosterView,
    structure: HashMap<&'a Marker, &'a Block>,
    slots: HashMap<&'a str, &'a Slot>,
    expected: &'a [Block],
    context: Owner,
    seen: HashMap<Marker, usize>,
    sets: Vec<Edit>,
    news: Vec<NewItem>,
    end: Option<usize>,
}

impl<'a> Reader<'a> {
    fn new(original: &'a AgreementView, expected: &'a [Block], roster: &'a RosterView) -> Self {
        Self {
            original,
            roster,
            structure: expected
                .iter()
                .filter(|b| b.slot.is_none())
                .map(|b| (&b.marker, b))
                .collect(),
            slots: expected
                .iter()
                .filter_map(|b| b.slot.as_ref())
                .map(|s| (s.path.as_str(), s))
                .collect(),
            expected,
            context: Owner::Top,
            seen: HashMap::new(),
            sets: Vec::new(),
            news: Vec::new(),
            end: None,
        }
    }

    fn read(&mut self, block: &RawBlock<'_>) -> Result<(), ModelError> {
        let Some((line, marker)) = &block.marker else {
            return check_fixed_lines(&block.body, &[]);
        };
        if let Some(end) = self.end {
            return Err(at(
                *line,
                format!("this marker comes after the end marker on line {end}, which must be last"),
            ));
        }
        match marker {
            Marker::Field(path) => self.field(*line, path, &block.body),
            _ => self.structure(*line, marker, &block.body),
        }
    }

    fn structure(
        &mut self,
        line: usize,
        marker: &Marker,
        body: &[(usize, &str)],
    ) -> Result<(), ModelError> {
        let expected = *self
            .structure
            .get(marker)
            .ok_or_else(|| self.unknown_structure(line, marker))?;
        if !matches!(marker, Marker::New(_)) {
            self.first_time(line, marker)?;
        }
        let fixed: Vec<String> = expected
            .lines
            .iter()
            .chain(&expected.guidance)
            .cloned()
            .collect();
        check_fixed_lines(body, &fixed)?;
        self.context = marker.context().unwrap_or(Owner::Top);
        match marker {
            Marker::End => self.end = Some(line),
            Marker::New(list) => self.news.push(NewItem {
                list: list.clone(),
                values: Vec::new(),
            }),
            _ => {}
        }
        Ok(())
    }

    fn field(&mut self, line: usize, path: &str, body: &[(usize, &str)]) -> Result<(), ModelError> {
        let slot = *self
            .slots
            .get(path)
            .ok_or_else(|| self.unknown_field(line, path))?;
        if slot.owner != self.context {
            let home = describe(&slot.owner);
            return Err(at(
                line,
                format!(
                    "the marker for {path} is out of place: it belongs {home}; put marker lines back where they were"
                ),
            ));
        }
        let (typed, value_line) = block_value(slot.head.as_deref(), body, line)?;
        if let Owner::New(_) = slot.owner {
            return self.new_value(line, slot, typed, value_line);
        }
        self.first_time(line, &Marker::Field(path.to_owned()))?;
        if let Some(value) =
            changed(&slot.field, &typed, self.roster).map_err(|e| at(value_line, e))?
        {
            self.check_member(value_line, &slot.owner)?;
            self.sets.push(Edit::Set {
                path: path.to_owned(),
                value,
            });
        }
        Ok(())
    }

    fn new_value(
        &mut self,
        line: usize,
        slot: &Slot,
        typed: String,
        value_line: usize,
    ) -> Result<(), ModelError> {
        let item = self
            .news
            .last_mut()
            .ok_or_else(|| at(line, "this field is outside any new-item block"))?;
        if item.values.iter().any(|(key, ..)| key == slot.field.key) {
            return Err(at(
                line,
                format!(
                    "this new item already has a {} field; each copy of the template needs its own accord:new marker",
                    slot.field.key
                ),
            ));
        }
        item.values
            .push((slot.field.key.to_owned(), typed, value_line));
        Ok(())
    }

    fn first_time(&mut self, line: usize, marker: &Marker) -> Result<(), ModelError> {
        match self.seen.insert(marker.clone(), line) {
            Some(first) => Err(at(
                line,
                format!(
                    "the marker {} appears twice (also on line {first}); keep only one",
                    marker.line()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Entries of organisations that have left stay readable but cannot be
    /// written, since a path only resolves for current members.
    fn check_member(&self, line: usize, owner: &Owner) -> Result<(), ModelError> {
        let Owner::Org(_, hex) = owner else {
            return Ok(());
        };
        match hex.parse::<OrgKey>() {
            Ok(key) if self.roster.member(&key).is_some() => Ok(()),
            _ => Err(at(
                line,
                "this organisation is no longer a member, so its entry cannot be changed; undo this change",
            )),
        }
    }

    fn finish(self, lines: usize) -> Result<Vec<Edit>, ModelError> {
        let end = self.end.ok_or_else(|| {
            at(lines, format!("the file ends without the {} marker: it may have been cut short; start the edit again", Marker::End.line()))
        })?;
        let removed: Vec<&Marker> = self
            .expected
            .iter()
            .map(|b| &b.marker)
            .filter(|m| matches!(m, Marker::Item { .. }) && !self.seen.contains_key(*m))
            .collect();
        self.check_complete(end, &removed)?;
        let mut edits = self.sets;
        for item in &self.news {
            edits.extend(new_item_edit(item, &self.slots, self.roster)?);
        }
        edits.extend(removed.into_iter().filter_map(|m| match m {
            Marker::Item { list, id } => Some(Edit::Remove {
                path: format!("{list}.{id}"),
            }),
            _ => None,
        }));
        Ok(edits)
    }

    /// Every marker must still be there, except whole removed items and
    /// template copies.
    fn check_complete(&self, end: usize, removed: &[&Marker]) -> Result<(), ModelError> {
        for block in self.expected {
            let optional = match (&block.marker, block.slot.as_ref().map(|s| &s.owner)) {
                (Marker::Item { .. } | Marker::New(_), _) | (_, Some(Owner::New(_))) => true,
                (_, Some(Owner::Item(list, id))) => removed.contains(&&Marker::Item {
                    list: list.clone(),
                    id: id.clone(),
                }),
                _ => false,
            };
            if !optional && !self.seen.contains_key(&block.marker) {
                let what = block.marker.line();
                return Err(at(
                    end,
                    format!(
                        "the marker {what} is missing; put it back (with its value) where it was"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn unknown_structure(&self, line: usize, marker: &Marker) -> ModelError {
        let (kind, id) = (self.original.kind, self.original.id);
        let why = match marker {
            Marker::About { .. } => format!(
                "this file was made for a different agreement than the {kind} {id} being edited"
            ),
            Marker::Section(key) => format!("{kind} agreements have no section {key:?}"),
            Marker::Item { list, id } => {
                format!("{list} has no item {id:?} (it may have been removed meanwhile)")
            }
            Marker::Org { section, .. } => format!("{section} has no entry for that organisation"),
            Marker::New(list) => format!("{list:?} is not a list that items can be added to"),
            Marker::Field(_) | Marker::End => "this marker is not expected here".to_owned(),
        };
        at(line, format!("{why}; restore the marker line as it was"))
    }

    fn unknown_field(&self, line: usize, path: &str) -> ModelError {
        let kind = self.original.kind;
        at(
            line,
            format!(
                "{kind} agreements have no field {path:?} (or the item or organisation it names does not exist); restore the marker line as it was"
            ),
        )
    }
}

fn describe(owner: &Owner) -> String {
    match owner {
        Owner::Top => "at the top of the file, before the accord:about marker".to_owned(),
        Owner::About => "after the accord:about marker".to_owned(),
        Owner::Section(key) => format!("in section {key}"),
        Owner::Item(list, id) => format!("in the block of {list} item {id}"),
        Owner::Org(section, _) => format!("in its organisation's block in {section}"),
        Owner::New(list) => format!("in a block that starts with an accord:new {list} marker"),
        Owner::End => "before the end marker".to_owned(),
    }
}

/// The value under a field marker: the head line (`**Due:**`) is required
/// and stripped, blank lines around the value are dropped, escaped marker
/// lines are restored. Also returns the line the value starts on.
fn block_value(
    head: Option<&str>,
    body: &[(usize, &str)],
    marker_line: usize,
) -> Result<(String, usize), ModelError> {
    let mut lines = body
        .iter()
        .skip_while(|(_, l)| l.trim().is_empty())
        .peekable();
    let value_line = lines.peek().map_or(marker_line, |(n, _)| *n);
    let mut parts = Vec::new();
    if let Some(head) = head {
        let missing = || {
            format!("the field must start with {head}; put it back and write the value after it")
        };
        match lines.next() {
            Some((n, line)) => match line.trim_start().strip_prefix(head) {
                Some(after) => parts.push(after.strip_prefix(' ').unwrap_or(after).to_owned()),
                None => return Err(at(*n, missing())),
            },
            None => return Err(at(marker_line, missing())),
        }
    }
    parts.extend(lines.map(|(_, l)| unescape_line(l)));
    Ok((trim_blank_lines(&parts.join("\n")).to_owned(), value_line))
}

/// The stored form to write, or `None` when the person left it as it was.
fn changed(field: &FieldView, typed: &str, roster: &RosterView) -> Result<Option<String>, String> {
    if field.ty == ValueType::Text {
        return Ok((!same_text(&field.value, typed)).then(|| typed.to_owned()));
    }
    if typed.trim() == shown_value(field, roster).trim() {
        return Ok(None);
    }
    let stored = canonical(field, typed, roster)?;
    Ok((stored != field.value).then_some(stored))
}

/// Checks a typed value and turns it into its stored form; organisations
/// are looked up by name and stored by key.
fn canonical(field: &FieldView, typed: &str, roster: &RosterView) -> Result<String, String> {
    let label = field.label;
    if field.ty == ValueType::Text {
        return Ok(typed.to_owned());
    }
    if typed.contains('\n') {
        return Err(format!("{label} takes a single line"));
    }
    let result = match field.ty {
        ValueType::Org if typed.trim().is_empty() => Ok(String::new()),
        ValueType::Org => roster.resolve_member(typed.trim()).map(|m| m.key.to_hex()),
        _ => check_scalar(
            &Field {
                key: field.key,
                label,
                ty: field.ty,
            },
            typed,
        ),
    };
    result.map_err(|e| format!("{label}: {e}"))
}

/// An `Add` for a template copy that has something filled in; untouched
/// copies add nothing.
fn new_item_edit(
    item: &NewItem,
    slots: &HashMap<&str, &Slot>,
    roster: &RosterView,
) -> Result<Option<Edit>, ModelError> {
    let mut values = Vec::new();
    for (key, typed, line) in item
        .values
        .iter()
        .filter(|(_, typed, _)| !typed.trim().is_empty())
    {
        let path = format!("{}.new.{key}", item.list);
        let slot = slots
            .get(path.as_str())
            .ok_or_else(|| at(*line, format!("there is no field {path:?}")))?;
        let value = canonical(&slot.field, typed, roster).map_err(|e| at(*line, e))?;
        values.push((key.clone(), value));
    }
    Ok((!values.is_empty()).then(|| Edit::Add {
        list: item.list.clone(),
        values,
    }))
}

/// Lines under a structural marker are headings and guidance that are
/// not saved, so anything else there would be silently lost: refuse it.
/// Notes inside an HTML comment (like the instructions) are fine.
fn check_fixed_lines(body: &[(usize, &str)], fixed: &[String]) -> Result<(), ModelError> {
    let mut in_comment = false;
    for (n, line) in body {
        let text = line.trim();
        let opens = !in_comment && text.starts_with("<!--");
        let ok = in_comment || opens || text.is_empty() || fixed.iter().any(|f| f.trim() == text);
        if opens || in_comment {
            let after_open = if opens { &text[4..] } else { text };
            in_comment = !after_open.contains("-->");
        }
        if !ok {
            return Err(at(
                *n,
                "this line is not under any field, so it would be lost: move it below an accord:field marker, and leave headings as they were",
            ));
        }
    }
    Ok(())
}

fn at(line: usize, why: impl Display) -> ModelError {
    ModelError::Markdown(format!("line {line}: {why}"))
}
