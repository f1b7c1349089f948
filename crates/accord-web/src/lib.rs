//! The web page that `accord serve` serves: for most people at a small
//! charity, this page *is* Accord.
//!
//! [`Web`] holds everything the page needs across requests: the secret
//! token and sessions ([`gate`]), the workspace once there is one, the
//! sync status, and the feed of change notices. [`Web::router`] is an axum
//! `Router` to merge into the node's listener (`Node::start`'s
//! `extra_routes`); every route sits behind [`gate::guard`].
//!
//! The loop a caller writes (see `accord serve`):
//!
//! 1. `Web::new`, then either [`Web::attach`] an opened workspace, or, on
//!    first run, serve the router alone and await [`Web::first_run`] until
//!    the page has created the organisation.
//! 2. Start the node with `web.router()`, [`Web::set_address`] with the
//!    bound address, [`Web::attach`] the node's handle and events, and chain
//!    [`Web::committed`] into the workspace's commit listener.
//! 3. Print [`Web::url`] (it carries the token: print it, never log it).
//! 4. On stop, [`Web::shutdown`] before the node's: it ends the open event
//!    streams, which the listener's graceful shutdown would wait for.
//!
//! The page's assets are compiled in ([`assets`]): nothing is fetched from
//! the network, and building needs no npm.

mod api;
mod assets;
mod document;
mod edit;
mod error;
mod events;
mod export;
mod gate;
mod record;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use accord_node::{NodeEvent, NodeHandle};
use accord_workspace::{Committed, OrgInfo, Workspace};
use axum::Router;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

pub use error::WebError;
use events::{PageEvent, SyncStatus};
use gate::Gate;

/// The page's state, shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct Web {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Gate,
    /// The loopback name the printed URL uses (`127.0.0.1` or `[::1]`).
    host: Mutex<&'static str>,
    /// Where first-run setup creates the replica.
    data: PathBuf,
    phase: RwLock<Phase>,
    events: broadcast::Sender<PageEvent>,
    sync: Mutex<SyncStatus>,
    shutdown: CancellationToken,
    setup: Mutex<Option<oneshot::Sender<Arc<Workspace>>>>,
}

/// Where this node is in its life, as the page sees it.
#[derive(Clone)]
enum Phase {
    /// No replica yet: the page asks for the organisation's name.
    FirstRun,
    /// The replica exists; the node is starting.
    Starting(OrgInfo),
    Ready(Running),
}

/// What the API works on once the node runs.
#[derive(Clone)]
struct Running {
    ws: Arc<Workspace>,
    /// `None` in tests without a node: joins and peers are only recorded.
    node: Option<NodeHandle>,
}

impl Web {
    /// A page for the replica in `data` (which may not exist yet).
    pub fn new(data: &Path) -> Result<Self, WebError> {
        let (events, _) = broadcast::channel(256);
        Ok(Self {
            inner: Arc::new(Inner {
                gate: Gate::new()?,
                host: Mutex::new("127.0.0.1"),
                data: data.to_owned(),
                phase: RwLock::new(Phase::FirstRun),
                events,
                sync: Mutex::new(SyncStatus::default()),
                shutdown: CancellationToken::new(),
                setup: Mutex::new(None),
            }),
        })
    }

    /// The routes of the page and its API, each behind the gate.
    pub fn router(&self) -> Router {
        let routes = assets::routes()
            .merge(api::routes())
            .merge(edit::routes())
            .merge(export::routes())
            .merge(events::routes())
            .merge(trust::routes())
            .merge(record::routes());
        routes
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                gate::guard,
            ))
            .with_state(self.clone())
    }

    /// The address the page is served on: `Host` and `Origin` must name
    /// its port. Until it is set, every request is refused.
    pub fn set_address(&self, addr: std::net::SocketAddr) {
        let host = if addr.is_ipv6() { "[::1]" } else { "127.0.0.1" };
        if let Ok(mut slot) = self.inner.host.lock() {
            *slot = host;
        }
        self.inner.gate.set_port(addr.port());
    }

    /// The address to open, with the secret token. Print it for the
    /// person; never log it.
    pub fn url(&self) -> String {
        let host = self.inner.host.lock().map(|h| *h).unwrap_or("127.0.0.1");
        format!(
            "http://{host}:{}/?token={}",
            self.inner.gate.port(),
            self.inner.gate.token()
        )
    }

    /// Waits for first-run setup: resolves with the new workspace once
    /// the page has created the organisation.
    pub fn first_run(&self) -> oneshot::Receiver<Arc<Workspace>> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut slot) = self.inner.setup.lock() {
            *slot = Some(tx);
        }
        rx
    }

    /// Serves the API over `ws` from now on. With a node, its events keep
    /// the sync status and the page's change notices up to date (until
    /// [`shutdown`](Self::shutdown)); call from within a tokio runtime.
    pub fn attach(
        &self,
        ws: Arc<Workspace>,
        node: Option<(NodeHandle, broadcast::Receiver<NodeEvent>)>,
    ) {
        let handle = node.as_ref().map(|(handle, _)| handle.clone());
        if let Some((_, events)) = node {
            tokio::spawn(events::follow_node(self.clone(), events));
        }
        self.set_phase(Phase::Ready(Running { ws, node: handle }));
        self.notify(PageEvent::Ready);
    }

    /// Tells open pages about changes this workspace committed. Chain it
    /// into the workspace's commit listener.
    pub fn committed(&self, committed: &[Committed]) {
        for change in committed {
            let doc = match change {
                Committed::NewDocument { doc, .. } | Committed::Change { doc, .. } => *doc,
            };
            self.notify(PageEvent::Changed {
                doc: doc.to_string(),
            });
        }
    }

    /// Ends the open event streams, so the listener can stop.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    fn phase(&self) -> Phase {
        match self.inner.phase.read() {
            Ok(phase) => phase.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_phase(&self, phase: Phase) {
        match self.inner.phase.write() {
            Ok(mut slot) => *slot = phase,
            Err(poisoned) => *poisoned.into_inner() = phase,
        }
    }

    fn running(&self) -> Result<Running, WebError> {
        match self.phase() {
            Phase::Ready(running) => Ok(running),
            Phase::FirstRun | Phase::Starting(_) => Err(WebError::NotReady),
        }
    }

    fn notify(&self, event: PageEvent) {
        // No subscriber (no page open) is fine.
        let _ = self.inner.events.send(event);
    }

    /// Runs a workspace call on a blocking thread: redb commits wait for
    /// fsync, which must not stall the async workers serving other pages
    /// and the sync connections.
    async fn with_ws<T, F>(&self, f: F) -> Result<T, WebError>
    where
        T: Send + 'static,
        F: FnOnce(&Running) -> Result<T, WebError> + Send + 'static,
    {
        let running = self.running()?;
        tokio::task::spawn_blocking(move || f(&running))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?
    }
}
