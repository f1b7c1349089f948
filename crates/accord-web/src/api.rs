//! The JSON API for the page's screens: first run, partnerships, members,
//! invites, peers, documents and history. Exports are in [`crate::export`],
//! sign-off and comments in [`crate::trust`]. Edits of a document's
//! fields are in [`crate::edit`].
//!
//! Handlers are thin: read the request, run one workspace call on a
//! blocking thread ([`Web::with_ws`]), answer JSON. Roles are enforced by
//! the workspace (a consultee's edit fails there, and maps to 403).

use std::sync::Arc;

use accord_identity::OrgKey;
use accord_model::{DocKind, Role, RosterView};
use accord_workspace::{Invite, PeerConfig, Workspace, normalise_url};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::document::{document_json, partnership_json};
use crate::error::WebError;
use crate::trust::summary;
use crate::{Phase, Running, Web};

type ApiResult = Result<Json<Json_>, WebError>;

pub(crate) fn routes() -> Router<Web> {
    Router::new()
        .route("/api/state", get(state))
        .route("/api/setup", post(setup))
        .route(
            "/api/partnerships",
            get(partnerships).post(create_partnership),
        )
        .route("/api/partnerships/{id}", get(partnership))
        .route("/api/partnerships/{id}/members", post(add_member))
        .route(
            "/api/partnerships/{id}/members/{member}/role",
            post(set_role),
        )
        .route("/api/partnerships/{id}/invites", post(invite))
        .route("/api/partnerships/{id}/documents", post(create_document))
        .route("/api/join", post(join))
        .route("/api/peers", get(peers).post(add_peer))
        .route("/api/documents/{id}", get(document))
        .route("/api/documents/{id}/history", get(history))
}

/// Where the node is (first run, starting, ready) and who this organisation is.
async fn state(State(web): State<Web>) -> Json<Json_> {
    let (phase, org) = match web.phase() {
        Phase::FirstRun => ("first_run", None),
        Phase::Starting(org) => ("starting", Some(org)),
        Phase::Ready(running) => ("ready", Some(running.ws.whoami())),
    };
    let org = org.map(|o| json!({ "name": o.name, "key": o.key.to_hex(), "fingerprint": o.fingerprint.to_string() }));
    Json(json!({ "phase": phase, "org": org }))
}

#[derive(Deserialize)]
struct SetupRequest {
    org: String,
}

/// First run: creates this organisation's replica and key, then hands the
/// workspace to whoever awaits [`Web::first_run`] (which starts the node).
async fn setup(State(web): State<Web>, Json(req): Json<SetupRequest>) -> ApiResult {
    let name = req.org.trim().to_owned();
    if name.is_empty() {
        return Err(WebError::BadRequest(
            "Enter your organisation's name.".into(),
        ));
    }
    if !matches!(web.phase(), Phase::FirstRun) {
        return Err(WebError::AlreadySetUp);
    }
    let waiter = web.inner.setup.lock().ok().and_then(|mut s| s.take());
    let Some(waiter) = waiter else {
        return Err(WebError::AlreadySetUp);
    };
    let data = web.inner.data.clone();
    let ws = tokio::task::spawn_blocking(move || Workspace::init(&data, &name))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))??;
    let me = ws.whoami();
    web.set_phase(Phase::Starting(me.clone()));
    let _ = waiter.send(Arc::new(ws));
    Ok(Json(
        json!({ "org": me.name, "fingerprint": me.fingerprint.to_string() }),
    ))
}

async fn partnerships(State(web): State<Web>) -> ApiResult {
    web.with_ws(|r| {
        let list: Vec<Json_> =
            r.ws.partnerships()?
                .iter()
                .map(|p| partnership_summary(r, p))
                .collect();
        let pending = r.ws.joined_pending()?.len();
        Ok(Json(
            json!({ "partnerships": list, "pending_joins": pending }),
        ))
    })
    .await
}

/// A partnership with this organisation's role, and each agreement with
/// its sign-off state at a glance (`null` while the agreement itself has
/// not arrived from a partner yet).
pub(crate) fn partnership_summary(r: &Running, roster: &RosterView) -> Json_ {
    let mut out = partnership_json(roster);
    if let Some(obj) = out.as_object_mut() {
        let me = r.ws.whoami().key;
        obj.insert("role".into(), json!(roster.member(&me).map(|m| m.role)));
        let documents: Vec<Json_> = roster
            .documents
            .iter()
            .map(|d| {
                let signoff = r.ws.status(&d.id.to_string()).ok().map(|s| summary(&s));
                json!({ "id": d.id, "kind": d.kind, "title": d.title, "signoff": signoff })
            })
            .collect();
        obj.insert("documents".into(), json!(documents));
    }
    out
}

#[derive(Deserialize)]
struct NameRequest {
    name: String,
}

async fn create_partnership(State(web): State<Web>, Json(req): Json<NameRequest>) -> ApiResult {
    web.with_ws(move |r| {
        if req.name.trim().is_empty() {
            return Err(WebError::BadRequest("Give the partnership a name.".into()));
        }
        let roster = r.ws.create_partnership(&req.name)?;
        Ok(Json(partnership_summary(r, &roster)))
    })
    .await
}

async fn partnership(State(web): State<Web>, Path(id): Path<String>) -> ApiResult {
    web.with_ws(move |r| Ok(Json(partnership_summary(r, &r.ws.partnership(&id)?))))
        .await
}

#[derive(Deserialize)]
struct MemberRequest {
    name: String,
    key: String,
    role: String,
}

async fn add_member(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<MemberRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let key: OrgKey = req.key.trim().parse().map_err(|_| {
            WebError::BadRequest(
                "That is not a public key: ask the partner for the key shown on their Accord page (64 hexadecimal characters).".into(),
            )
        })?;
        if req.name.trim().is_empty() {
            return Err(WebError::BadRequest("Enter the partner's name.".into()));
        }
        let role: Role = req.role.parse()?;
        let roster = r.ws.add_member(&id, &req.name, key, role)?;
        Ok(Json(partnership_summary(r, &roster)))
    })
    .await
}

#[derive(Deserialize)]
struct RoleRequest {
    role: String,
}

async fn set_role(
    State(web): State<Web>,
    Path((id, member)): Path<(String, String)>,
    Json(req): Json<RoleRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let role: Role = req.role.parse()?;
        let roster = r.ws.set_role(&id, &member, role)?;
        Ok(Json(partnership_summary(r, &roster)))
    })
    .await
}

#[derive(Deserialize)]
struct InviteRequest {
    member: String,
}

/// An invite code for a member already on the roster; it names this
/// replica's first configured relay or peer, as `accord invite` does.
async fn invite(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<InviteRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let peer = r.ws.peers()?.into_iter().next();
        let invite = r.ws.invite(
            &id,
            &req.member,
            peer.as_ref().map(|p| (p.url.as_str(), p.key)),
        )?;
        Ok(Json(
            json!({ "code": invite.encode(), "relay": invite.peer.map(|p| p.url) }),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct CodeRequest {
    code: String,
}

/// Records an invite and, with a node, asks for the partnership and dials
/// its relay at once (as `accord join` does inside `accord serve`).
async fn join(State(web): State<Web>, Json(req): Json<CodeRequest>) -> ApiResult {
    web.with_ws(move |r| {
        let invite = Invite::decode(&req.code)?;
        let known: Vec<String> = r.ws.peers()?.into_iter().map(|p| p.url).collect();
        r.ws.join(&invite)?;
        if let Some(node) = &r.node {
            node.want(invite.partnership);
            if let Some(peer) = invite.peer.clone().filter(|p| !known.contains(&p.url)) {
                node.dial(peer);
            }
        }
        Ok(Json(
            json!({ "partnership": invite.partnership.to_string(), "name": invite.name }),
        ))
    })
    .await
}

async fn peers(State(web): State<Web>) -> ApiResult {
    let status = match web.inner.sync.lock() {
        Ok(status) => json!(status.view()),
        Err(_) => Json_::Null,
    };
    web.with_ws(move |r| {
        let configured: Vec<Json_> = r
            .ws
            .peers()?
            .iter()
            .map(|p| json!({ "url": p.url, "key": p.key.map(|k| k.to_hex()), "fingerprint": p.key.map(|k| k.fingerprint().to_string()) }))
            .collect();
        Ok(Json(json!({ "configured": configured, "status": status })))
    })
    .await
}

#[derive(Deserialize)]
struct PeerRequest {
    url: String,
    #[serde(default)]
    key: Option<String>,
}

async fn add_peer(State(web): State<Web>, Json(req): Json<PeerRequest>) -> ApiResult {
    web.with_ws(move |r| {
        let key: Option<OrgKey> = match req.key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(k) => Some(k.parse().map_err(|_| {
                WebError::BadRequest(
                    "That is not a public key (the relay prints it as \"Relay key\").".into(),
                )
            })?),
        };
        let url = normalise_url(&req.url)?;
        let added = r.ws.add_peer(&url, key)?;
        if let (true, Some(node)) = (added, &r.node) {
            node.dial(PeerConfig {
                url: url.clone(),
                key,
            });
        }
        Ok(Json(json!({ "url": url, "added": added })))
    })
    .await
}

#[derive(Deserialize)]
struct DocumentRequest {
    kind: String,
    title: String,
}

async fn create_document(
    State(web): State<Web>,
    Path(id): Path<String>,
    Json(req): Json<DocumentRequest>,
) -> ApiResult {
    web.with_ws(move |r| {
        let kind: DocKind = req.kind.parse()?;
        let title = if req.title.trim().is_empty() {
            kind.label()
        } else {
            req.title.as_str()
        };
        let doc = r.ws.create_document(&id, kind, title)?;
        Ok(Json(
            json!({ "id": doc.id.to_string(), "title": doc.title }),
        ))
    })
    .await
}

async fn document(State(web): State<Web>, Path(id): Path<String>) -> ApiResult {
    web.with_ws(move |r| Ok(Json(current_document(&r.ws, &id)?)))
        .await
}

/// The document as the editor draws it, at its current version.
pub(crate) fn current_document(ws: &Workspace, id: &str) -> Result<Json_, WebError> {
    let (view, roster) = ws.view(id)?;
    Ok(document_json(&view, &roster, &ws.whoami().key))
}

/// Every change, oldest first, with the organisation's name and what it changed.
async fn history(State(web): State<Web>, Path(id): Path<String>) -> ApiResult {
    web.with_ws(move |r| {
        let (doc, roster, entries) = r.ws.history(&id)?;
        let entries: Vec<Json_> = entries
            .into_iter()
            .map(|e| {
                let name = e.org.map(|k| roster.display_name(&k));
                let mut entry = json!(e);
                if let Some(obj) = entry.as_object_mut() {
                    obj.insert("org".into(), json!(e.org.map(|k| k.to_hex())));
                    obj.insert("org_name".into(), json!(name));
                }
                entry
            })
            .collect();
        let labels: serde_json::Map<String, Json_> = doc
            .kind
            .schema()
            .iter()
            .map(|s| (s.key.to_owned(), json!(s.label)))
            .collect();
        Ok(Json(json!({
            "document": { "id": doc.id.to_string(), "title": doc.title, "kind": doc.kind },
            "labels": labels,
            "partnership": partnership_json(&roster),
            "entries": entries,
        })))
    })
    .await
}
