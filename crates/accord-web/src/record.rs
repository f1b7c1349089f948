//! Reading the record on the page: who wrote which words of a field
//! (blame), what changed between two versions (diff), and each
//! organisation's footprint in a partnership (audit). All three come from
//! the workspace, which reads only verified provenance: the page draws
//! what it is given and marks what the workspace marks unverified.

use accord_workspace::Piece;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::Web;
use crate::error::WebError;

type ApiResult = Result<Json<Json_>, WebError>;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/api/documents/{id}/blame/{field}", get(blame))
        .route("/api/documents/{id}/diff", get(diff))
        .route("/api/partnerships/{id}/audit", get(audit))
}

/// The text of one field, span by span, each with the organisation that wrote it.
async fn blame(State(web): State<Web>, Path((id, field)): Path<(String, String)>) -> ApiResult {
    web.with_ws(move |r| {
        let spans: Vec<Json_> =
            r.ws.blame(&id, &field)?
                .into_iter()
                .map(|s| {
                    json!({
                        "text": s.span.text,
                        "org": s.span.org.map(|k| k.to_hex()),
                        "org_name": s.org_name,
                    })
                })
                .collect();
        Ok(Json(json!({ "field": field, "spans": spans })))
    })
    .await
}

#[derive(Deserialize)]
struct DiffQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// Word-level differences between two versions, section by section. A
/// version is `current`, a history position (`3`: after the third
/// change), a date, or a member (its latest sign-off).
async fn diff(
    State(web): State<Web>,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> ApiResult {
    web.with_ws(move |r| {
        let from = q.from.as_deref().filter(|v| !v.trim().is_empty());
        let to = q.to.as_deref().filter(|v| !v.trim().is_empty());
        let diff = r.ws.diff(&id, from, to)?;
        let sections: Vec<Json_> = diff
            .sections
            .iter()
            .map(|s| {
                let pieces: Vec<Json_> = s
                    .pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Same(t) => json!({ "kind": "same", "text": t }),
                        Piece::Added(t) => json!({ "kind": "added", "text": t }),
                        Piece::Removed(t) => json!({ "kind": "removed", "text": t }),
                    })
                    .collect();
                json!({ "section": s.section, "pieces": pieces })
            })
            .collect();
        Ok(Json(
            json!({ "from": diff.from, "to": diff.to, "sections": sections }),
        ))
    })
    .await
}

/// Per organisation: changes (and how many could not be verified),
/// documents touched, last activity, sign-offs given, refusals recorded.
async fn audit(State(web): State<Web>, Path(id): Path<String>) -> ApiResult {
    web.with_ws(move |r| {
        let rows: Vec<Json_> =
            r.ws.audit(&id)?
                .into_iter()
                .map(|a| {
                    json!({
                        "name": a.name,
                        "key": a.key.to_hex(),
                        "fingerprint": a.key.fingerprint().to_string(),
                        "role": a.role.map(|r| r.as_str()),
                        "changes": a.changes,
                        "unverified_changes": a.unverified_changes,
                        "documents_touched": a.documents_touched,
                        "last_activity": a.last_activity,
                        "signoffs": a.signoffs,
                        "refusals": a.refusals,
                    })
                })
                .collect();
        Ok(Json(json!({ "organisations": rows })))
    })
    .await
}
