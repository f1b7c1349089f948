//! Sign-off, comments and member removal for the page.
//!
//! Comments and sign-offs live in each organisation's notes document, not
//! in the agreement: a consultee may comment without being able to touch
//! the text, and a signature names the agreement's exact version from
//! outside it. So the page learns of a partner's new comment or signature
//! from a change notice for that partner's notes document; every
//! partnership's JSON lists those ids (`notes_docs`) for the page to match.
//!
//! Roles are enforced by the workspace (a consultee's signature, an informed
//! party's comment fail there and map to 403); the flags sent here
//! (`can_sign`, `can_resolve`) only decide which controls the page draws.

use accord_identity::OrgKey;
use accord_model::{Role, RosterView};
use accord_workspace::{CommentView, MemberStatus, SignOffState, Workspace};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::Web;
use crate::api::partnership_summary;
use crate::error::WebError;

type ApiResult = Result<Json<Json_>, WebError>;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/api/documents/{id}/signoffs", get(signoffs).post(sign))
        .route("/api/documents/{id}/comments", get(comments).post(comment))
        .route(
            "/api/documents/{id}/comments/{comment}/resolve",
            post(resolve),
        )
        .route(
            "/api/partnerships/{id}/members/{member}/remove",
            post(remove_member),
        )
}

/// Each member's sign-off state for the current version.
async fn signoffs(State(web): State<Web>, Path(id): Path<String>) -> ApiResult {
    web.with_ws(move |r| Ok(Json(signoffs_json(&r.ws, &id)?)))
        .await
}

#[derive(Deserialize)]
struct SignRequest {
    statement: String,
}

/// Signs the current version (decision makers only) and answers the new status.
async fn sign(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<SignRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let statement = match req.statement.trim() {
            "" => "We agree to this version",
            s => s,
        };
        r.ws.sign(&id, statement)?;
        Ok(Json(signoffs_json(&r.ws, &id)?))
    })
    .await
}

/// The sign-off panel's data: per member, and what this organisation may do.
fn signoffs_json(ws: &Workspace, id: &str) -> Result<Json_, WebError> {
    let status = ws.status(id)?;
    let me = ws.whoami().key;
    let my_role = status.iter().find(|m| m.key == me).map(|m| m.role);
    Ok(json!({
        "members": status.iter().map(member_status_json).collect::<Vec<_>>(),
        "can_sign": my_role == Some(Role::DecisionMaker),
        "summary": summary(&status),
    }))
}

pub(crate) fn member_status_json(m: &MemberStatus) -> Json_ {
    json!({
        "name": m.name,
        "key": m.key.to_hex(),
        "fingerprint": m.key.fingerprint().to_string(),
        "role": m.role.as_str(),
        "state": m.state,
        "signoff": m.signoff.as_ref().map(|s| json!({
            "version": s.heads_text(),
            "at": s.at,
            "statement": s.statement,
            "fingerprint": s.org.fingerprint().to_string(),
        })),
    })
}

/// Whether the decision makers have all signed this exact version, and
/// who signed an earlier one: what the banner and the partnership screen say.
pub(crate) fn summary(status: &[MemberStatus]) -> Json_ {
    let deciders: Vec<&MemberStatus> = status
        .iter()
        .filter(|m| m.role == Role::DecisionMaker)
        .collect();
    let names = |state: SignOffState| -> Vec<&str> {
        deciders
            .iter()
            .filter(|m| m.state == state)
            .map(|m| m.name.as_str())
            .collect()
    };
    let current = names(SignOffState::Current);
    json!({
        "decision_makers": deciders.len(),
        "signed_current": current,
        "signed_earlier": names(SignOffState::Earlier),
        "not_signed": names(SignOffState::NotSigned),
        "all_signed": !deciders.is_empty() && current.len() == deciders.len(),
    })
}

/// Every comment on the agreement, oldest first.
async fn comments(State(web): State<Web>, Path(id): Path<String>) -> ApiResult {
    web.with_ws(move |r| Ok(Json(comments_json(&r.ws, &id)?)))
        .await
}

#[derive(Deserialize)]
struct CommentRequest {
    field: String,
    text: String,
    #[serde(default)]
    quote: Option<String>,
}

/// Adds a comment (decision makers and consultees) and answers the list.
async fn comment(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<CommentRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        if req.text.trim().is_empty() {
            return Err(WebError::BadRequest("Write the comment first.".into()));
        }
        r.ws.comment(&id, &req.field, &req.text, req.quote.as_deref())?;
        Ok(Json(comments_json(&r.ws, &id)?))
    })
    .await
}

/// Resolves a comment (its author, or any decision maker) and answers the list.
async fn resolve(State(web): State<Web>, Path((id, comment)): Path<(String, String)>) -> ApiResult {
    web.with_ws(move |r| {
        r.ws.resolve_comment(&id, &comment)?;
        Ok(Json(comments_json(&r.ws, &id)?))
    })
    .await
}

fn comments_json(ws: &Workspace, id: &str) -> Result<Json_, WebError> {
    let doc = ws.document(id)?;
    let roster = ws.partnership(&doc.partnership.to_string())?;
    let me = ws.whoami().key;
    let role = roster.member(&me).map(|m| m.role);
    let list: Vec<Json_> = ws
        .comments(id)?
        .iter()
        .map(|c| comment_json(c, &me, role))
        .collect();
    Ok(json!({
        "comments": list,
        "can_comment": matches!(role, Some(Role::DecisionMaker | Role::Consultee)),
    }))
}

fn comment_json(c: &CommentView, me: &OrgKey, role: Option<Role>) -> Json_ {
    let open = c.resolved_by.is_none();
    json!({
        "id": c.comment.id,
        "field": c.comment.field,
        "section": c.comment.field.split('.').next().unwrap_or_default(),
        "quote": c.comment.quote,
        "text": c.comment.text,
        "created": c.comment.created,
        "author": c.comment.author.to_hex(),
        "author_name": c.author_name,
        "resolved_by": c.resolved_by,
        "can_resolve": open && (c.comment.author == *me || role == Some(Role::DecisionMaker)),
    })
}

/// Removes a member from the roster (decision makers only). The page asks
/// for confirmation first; here it is one roster change like any other.
async fn remove_member(
    State(web): State<Web>,
    Path((id, member)): Path<(String, String)>,
) -> ApiResult {
    web.with_ws(move |r| {
        let roster: RosterView = r.ws.remove_member(&id, &member)?;
        Ok(Json(partnership_summary(r, &roster)))
    })
    .await
}
