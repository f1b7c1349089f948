//! Edits from the page's editor: character splices into text fields,
//! values of dates and choices, list items added and removed.
//!
//! **Text** is edited by splices, never by replacing the whole value, and
//! each splice applies to the version the person was looking at (`base`,
//! heads the page got from us) and is then merged with whatever arrived
//! meanwhile (`Workspace::edit_at`). So two partners typing in one field
//! each keep their words, wherever the other's text landed.
//!
//! **Positions** arrive in UTF-16 code units, as the browser counts them
//! (`textarea.selectionStart`, `String.length`), and are converted here to
//! the Unicode code points that Automerge counts in this build (see
//! `Agreement::splice_text`). A position inside a surrogate pair (half an
//! emoji) or past the end is refused rather than guessed.

use accord_model::automerge::{ChangeHash, ReadDoc};
use accord_model::{Agreement, ModelError, RosterView};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::api::current_document;
use crate::error::WebError;
use crate::{Running, Web};

type ApiResult = Result<Json<Json_>, WebError>;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/api/documents/{id}/splice", post(splice))
        .route("/api/documents/{id}/set", post(set))
        .route("/api/documents/{id}/items", post(add_item))
        .route("/api/documents/{id}/remove", post(remove_item))
}

/// One splice in the browser's units: delete `delete` UTF-16 units at
/// `pos`, then insert `insert` there.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Splice {
    pub pos: usize,
    pub delete: usize,
    pub insert: String,
}

#[derive(Deserialize)]
struct SpliceRequest {
    path: String,
    /// The version the splices were made against (the page's copy of the field).
    base: Vec<String>,
    /// Applied in order; each position counts in the text left by the previous.
    splices: Vec<Splice>,
}

/// Applies splices as one change made at `base`, merged with the present.
/// Answers the change's hash (the page's next `base` for this field while
/// it keeps typing) and the whole merged document.
async fn splice(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<SpliceRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let base = parse_heads(&req.base)?;
        let mut refused = None;
        let hash = r.ws.edit_at(&id, Some(&base), "", |agreement, roster| {
            apply_splices(agreement, roster, &req.path, &req.splices, &mut refused)
        })?;
        if let Some(refused) = refused {
            return Err(WebError::BadRequest(refused));
        }
        answer(r, &id, hash)
    })
    .await
}

/// Converts every splice first (on a copy of the text), so a bad one
/// leaves the document untouched; then applies them all.
fn apply_splices(
    agreement: &mut Agreement,
    roster: &RosterView,
    path: &str,
    splices: &[Splice],
    refused: &mut Option<String>,
) -> Result<(), ModelError> {
    let text = agreement.text_obj(path, roster)?;
    let current = agreement.doc().text(&text)?;
    match to_code_points(&current, splices) {
        Ok(ops) => {
            for (pos, delete, insert) in ops {
                agreement.splice_text(&text, pos, delete as isize, insert)?;
            }
        }
        Err(message) => *refused = Some(message),
    }
    Ok(())
}

/// The splices in code points, checked against `text` as each leaves it.
pub(crate) fn to_code_points<'a>(
    text: &str,
    splices: &'a [Splice],
) -> Result<Vec<(usize, usize, &'a str)>, String> {
    let mut text = text.to_owned();
    let mut ops = Vec::with_capacity(splices.len());
    for s in splices {
        let start = utf16_to_byte(&text, s.pos)?;
        let end = utf16_to_byte(&text, s.pos + s.delete)?;
        let pos = text[..start].chars().count();
        let delete = text[start..end].chars().count();
        text.replace_range(start..end, &s.insert);
        ops.push((pos, delete, s.insert.as_str()));
    }
    Ok(ops)
}

/// The byte offset of a UTF-16 position, if it falls between characters.
fn utf16_to_byte(text: &str, units: usize) -> Result<usize, String> {
    let mut counted = 0;
    for (byte, c) in text.char_indices() {
        if counted == units {
            return Ok(byte);
        }
        counted += c.len_utf16();
        if counted > units {
            return Err(format!(
                "position {units} falls inside a character; reload the page"
            ));
        }
    }
    if counted == units {
        Ok(text.len())
    } else {
        Err(format!(
            "position {units} is past the end of the text; reload the page"
        ))
    }
}

fn parse_heads(heads: &[String]) -> Result<Vec<ChangeHash>, WebError> {
    heads
        .iter()
        .map(|h| h.parse().map_err(|_| WebError::UnknownVersion))
        .collect()
}

#[derive(Deserialize)]
struct SetRequest {
    path: String,
    value: String,
}

/// Sets a date, a number, a choice or an organisation (last writer wins);
/// on text it makes the smallest splices from the current text.
async fn set(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<SetRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let message = format!("Set {}", req.path);
        let hash = r.ws.edit(&id, &message, |agreement, roster| {
            agreement.set(&req.path, &req.value, roster)
        })?;
        answer(r, &id, hash)
    })
    .await
}

#[derive(Deserialize)]
struct AddRequest {
    list: String,
    #[serde(default)]
    values: Vec<(String, String)>,
}

async fn add_item(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<AddRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let message = format!("Added an item to {}", req.list);
        let mut item = None;
        let hash = r.ws.edit(&id, &message, |agreement, roster| {
            item = Some(agreement.add_item(&req.list, &req.values, roster)?);
            Ok(())
        })?;
        let mut out = answer(r, &id, hash)?;
        out.0["item"] = json!(item);
        Ok(out)
    })
    .await
}

#[derive(Deserialize)]
struct RemoveRequest {
    /// `LIST.ID`: by the item's stable id, so a concurrent insert cannot
    /// shift which item is removed.
    item: String,
}

async fn remove_item(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<RemoveRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let message = format!("Removed {}", req.item);
        let hash = r.ws.edit(&id, &message, |agreement, _| {
            agreement.remove_item(&req.item)
        })?;
        answer(r, &id, hash)
    })
    .await
}

fn answer(r: &Running, id: &str, hash: Option<String>) -> ApiResult {
    Ok(Json(
        json!({ "hash": hash, "document": current_document(&r.ws, id)? }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(pos: usize, delete: usize, insert: &str) -> Splice {
        Splice {
            pos,
            delete,
            insert: insert.into(),
        }
    }

    /// The code-point splices, owned (so tests can compare them).
    fn convert(text: &str, splices: &[Splice]) -> Result<Vec<(usize, usize, String)>, String> {
        to_code_points(text, splices).map(|ops| {
            ops.into_iter()
                .map(|(p, d, i)| (p, d, i.to_owned()))
                .collect()
        })
    }

    fn op(pos: usize, delete: usize, insert: &str) -> (usize, usize, String) {
        (pos, delete, insert.to_owned())
    }

    #[test]
    fn utf16_positions_become_code_points() {
        // "a😀b": the emoji is 2 UTF-16 units but 1 code point.
        let ops = convert("a😀b", &[splice(3, 1, "c")]).unwrap();
        assert_eq!(ops, vec![op(2, 1, "c")]);
        let ops = convert("a😀b", &[splice(1, 2, "")]).unwrap();
        assert_eq!(ops, vec![op(1, 1, "")]);
        // "é" (one code point, one unit) and CJK stay one for one.
        let ops = convert("éé漢", &[splice(3, 0, "!")]).unwrap();
        assert_eq!(ops, vec![op(3, 0, "!")]);
    }

    #[test]
    fn later_splices_count_in_the_text_the_earlier_left() {
        let ops = convert("ab", &[splice(0, 0, "😀"), splice(3, 0, "x")]).unwrap();
        assert_eq!(ops, vec![op(0, 0, "😀"), op(2, 0, "x")]);
    }

    #[test]
    fn half_a_character_or_past_the_end_is_refused() {
        assert!(convert("a😀b", &[splice(2, 0, "x")]).is_err());
        assert!(convert("a😀b", &[splice(1, 1, "")]).is_err());
        assert!(convert("ab", &[splice(3, 0, "x")]).is_err());
        assert!(convert("ab", &[splice(1, 5, "")]).is_err());
        assert_eq!(
            convert("ab", &[splice(2, 0, "x")]).unwrap(),
            vec![op(2, 0, "x")]
        );
    }
}
