//! Exports of an agreement: the printable page, the Markdown, and the
//! standard Automerge file.
//!
//! The copies themselves are rendered by `accord_workspace` (the same as
//! `accord export`); this module serves them with the right headers.

use accord_workspace::Workspace;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Web;
use crate::error::WebError;

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/export/{id}/{format}", get(export))
}

/// The printable page (`html`), the Markdown (`md`), or the standard
/// Automerge file (`automerge`) of an agreement.
async fn export(
    State(web): State<Web>,
    Path((id, format)): Path<(String, String)>,
) -> Result<Response, WebError> {
    web.with_ws(move |r| match format.as_str() {
        "html" => Ok(html(&r.ws, &id)?),
        "md" => {
            let text = r.ws.export_markdown(&id)?;
            Ok((
                [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                text,
            )
                .into_response())
        }
        "automerge" => {
            let bytes = r.ws.export_automerge(&id)?;
            let name: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let disposition = format!("attachment; filename=\"{name}.automerge\"");
            Ok((
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response())
        }
        other => Err(WebError::BadRequest(format!(
            "no export format {other:?}: use html, md or automerge"
        ))),
    })
    .await
}

fn html(ws: &Workspace, id: &str) -> Result<Response, WebError> {
    let page = ws.export_html(id)?;
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    // The export carries its own inline style and no script.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    Ok(response)
}
