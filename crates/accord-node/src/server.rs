//! Listening for partners (and, on a relay, for members): one axum router
//! with the websocket endpoint and a health check.

use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::DriverHandle;
use crate::link::{self, LinkInfo, MAX_WRITE_BUFFER, MAX_WS_MESSAGE};

#[derive(Clone)]
struct Shared {
    driver: DriverHandle,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    slots: Arc<Semaphore>,
    health: Arc<serde_json::Value>,
}

/// The sync endpoint and `/healthz`, to be merged with other routes (the web page).
pub fn router(
    driver: DriverHandle,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    max_connections: usize,
    health: serde_json::Value,
) -> Router {
    let shared = Shared {
        driver,
        shutdown,
        tracker,
        slots: Arc::new(Semaphore::new(max_connections)),
        health: Arc::new(health),
    };
    Router::new()
        .route("/sync", get(upgrade))
        .route("/healthz", get(healthz))
        .with_state(shared)
}

async fn healthz(State(shared): State<Shared>) -> Response {
    let mut health = (*shared.health).clone();
    if let Some(obj) = health.as_object_mut() {
        obj.insert("status".into(), "ok".into());
        let available = shared.slots.available_permits();
        obj.insert("free_connection_slots".into(), available.into());
    }
    axum::Json(health).into_response()
}

async fn upgrade(State(shared): State<Shared>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; try again later",
        )
            .into_response();
    };
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let Shared {
                driver,
                shutdown,
                tracker,
                ..
            } = shared;
            let (incoming, outgoing) = link::axum_halves(socket);
            let info = LinkInfo {
                dialed: false,
                expect: None,
                url: None,
            };
            tracker.track_future(async move {
                link::run(incoming, outgoing, info, driver, shutdown).await;
                drop(permit);
            })
        })
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
