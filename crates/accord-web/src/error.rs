//! What can go wrong answering the page, and the HTTP status each maps to.

use accord_workspace::WorkspaceError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why an API call failed, in words the page shows as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Model(#[from] accord_model::ModelError),
    /// The request itself is wrong (a bad field, a position past the end).
    #[error("{0}")]
    BadRequest(String),
    /// The organisation is still being created, or the node is starting.
    #[error("Accord is still starting; try again in a moment")]
    NotReady,
    /// First-run setup was asked for, but this replica already exists.
    #[error("this organisation is already set up")]
    AlreadySetUp,
    /// A version named by the page is not in this replica.
    #[error("this page is showing a version Accord does not know; reload the page")]
    UnknownVersion,
    #[error("the server could not finish the request: {0}")]
    Internal(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        use WorkspaceError as W;
        match self {
            WebError::Workspace(W::NotEntitled { .. } | W::NotAMember(_)) => StatusCode::FORBIDDEN,
            WebError::Workspace(
                W::NoSuchPartnership(_) | W::NoSuchDocument(_) | W::NoSuchComment(_),
            ) => StatusCode::NOT_FOUND,
            WebError::Workspace(
                W::Model(_)
                | W::BadUrl(_)
                | W::BadInvite
                | W::InviteForSomeoneElse { .. }
                | W::AmbiguousDocument { .. }
                | W::AmbiguousPartnership { .. }
                | W::NoSuchVersion(_)
                | W::BadExport(_),
            )
            | WebError::Model(_)
            | WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            WebError::AlreadySetUp | WebError::UnknownVersion => StatusCode::CONFLICT,
            WebError::Workspace(_) | WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "a web request failed");
        }
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}
