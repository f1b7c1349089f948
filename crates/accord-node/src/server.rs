//! Listening for partners (and, on a relay, for members): one axum router
//! with the websocket endpoint, a health check and the metrics.

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

/// The sync endpoint, `/healthz` and `/metrics`, to be merged with other routes (the web page).
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
        .route("/metrics", get(metrics))
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

/// Counters in the Prometheus text format (see `metrics.rs`).
async fn metrics(State(shared): State<Shared>) -> Response {
    let body = shared.driver.metrics().render();
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Bytes read from a peer's socket at a time. Tungstenite's default (128
/// KiB, allocated per connection up front) was most of a relay's memory per
/// connection (153 KiB in `relay-load`); frames are mostly small, and a
/// large one is still read whole, in more reads.
const READ_BUFFER: usize = 16 * 1024;

async fn upgrade(State(shared): State<Shared>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
        shared.driver.metrics().refused(crate::metrics::CAPACITY);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; try again later",
        )
            .into_response();
    };
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .read_buffer_size(READ_BUFFER)
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
                registered: None,
            };
            tracker.track_future(async move {
                link::run(incoming, outgoing, info, driver, shutdown).await;
                drop(permit);
            })
        })
}

/// How long a client may take to send its request headers. axum's own
/// `serve` has no such limit, so a client trickling bytes could hold a
/// socket forever (slowloris).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` is cancelled: one task per
/// TCP connection, each with a header deadline, all awaited on shutdown.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Frames are small and sent back to back (`Attest`, then `Sync`):
        // with Nagle's algorithm the second waits for the peer's delayed
        // ACK of the first, up to 40 ms on Linux.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not disable Nagle's algorithm");
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            // The header deadline starts once hyper has seen the first
            // bytes (its protocol detection waits for them unbounded), so a
            // socket that never sends anything is dropped here. (`peek`,
            // not `readable`: readiness may be reported with no data.)
            let mut first = [0u8; 1];
            if tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first))
                .await
                .is_err()
            {
                tracing::debug!("closing a connection that sent nothing");
                return;
            }
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}
