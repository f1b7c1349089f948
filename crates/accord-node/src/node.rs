//! A running node: the engine driver, the listener, and the dialers,
//! started together and stopped together.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use accord_identity::OrgKey;
use accord_model::PartnershipId;
use accord_store::Replica;
use accord_sync::{ConnId, Engine, EngineConfig, Event, PeerRole};
use accord_workspace::{CommitListener, PeerConfig, Workspace};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dialer::{dial_forever, dial_once};
use crate::driver::{Command, Driver, DriverHandle, NodeEvent};
use crate::{NodeError, server};

/// How to run a node.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Where to listen for partners; `None` to only dial out.
    pub listen: Option<SocketAddr>,
    /// Peers and relays to keep connections to.
    pub dial: Vec<PeerConfig>,
    /// A relay, rather than an organisation's node.
    pub relay: bool,
    /// Relay only: fingerprints of organisations allowed to create partnerships here.
    pub allowed_creators: Option<Vec<String>>,
    /// Most simultaneous incoming connections.
    pub max_connections: usize,
}

fn commit_listener(driver: &DriverHandle) -> CommitListener {
    let driver = driver.clone();
    Arc::new(move |committed| driver.send(Command::Committed(committed.to_vec())))
}

/// A started node. Dropping it without [`Node::shutdown`] stops it abruptly.
pub struct Node {
    driver: DriverHandle,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    engine_thread: Option<std::thread::JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
    org: OrgKey,
}

impl Node {
    /// Starts the node on `replica`. For an organisation, pass its
    /// workspace: local edits are pushed to partners as they are committed.
    pub async fn start(
        replica: Arc<Replica>,
        workspace: Option<Arc<Workspace>>,
        options: NodeOptions,
        extra_routes: Option<Router>,
    ) -> Result<Node, NodeError> {
        let org = replica.secret().public();
        let wanted: Vec<PartnershipId> = match &workspace {
            Some(ws) => ws.joined_pending()?,
            None => Vec::new(),
        };
        let engine = Engine::new(
            accord_identity::OrgSecret::from_seed(replica.secret().seed()),
            engine_config(&options),
        );
        let (driver, engine_thread) = Driver::spawn(
            &tokio::runtime::Handle::current(),
            engine,
            replica,
            workspace.clone(),
            wanted,
        )?;
        if let Some(ws) = &workspace {
            ws.set_commit_listener(commit_listener(&driver));
        }
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut node = Node {
            driver,
            shutdown,
            tracker,
            engine_thread: Some(engine_thread),
            local_addr: None,
            org,
        };
        if let Some(addr) = options.listen {
            node.listen(addr, &options, extra_routes).await?;
        }
        for peer in options.dial {
            node.tracker.spawn(dial_forever(
                peer.url,
                peer.key,
                node.driver.clone(),
                node.shutdown.clone(),
            ));
        }
        Ok(node)
    }

    async fn listen(
        &mut self,
        addr: SocketAddr,
        options: &NodeOptions,
        extra: Option<Router>,
    ) -> Result<(), NodeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| NodeError::Listen { addr, source: e })?;
        self.local_addr = Some(listener.local_addr()?);
        let health = serde_json::json!({
            "role": if options.relay { "relay" } else { "node" },
            "fingerprint": self.org.fingerprint().to_string(),
            "key": self.org.to_hex(),
        });
        let max = if options.max_connections == 0 {
            1024
        } else {
            options.max_connections
        };
        let mut router = server::router(
            self.driver.clone(),
            self.shutdown.clone(),
            self.tracker.clone(),
            max,
            health,
        );
        if let Some(extra) = extra {
            router = router.merge(extra);
        }
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            if let Err(e) = server::serve(listener, router, shutdown).await {
                tracing::error!(error = %e, "the listener stopped");
            }
        });
        Ok(())
    }

    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn org(&self) -> OrgKey {
        self.org
    }

    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.driver.subscribe()
    }

    pub fn driver(&self) -> &DriverHandle {
        &self.driver
    }

    /// The listener `start` installed on the workspace: it hands each
    /// commit (change, heads and attestation) to the sync driver. Whoever
    /// replaces the workspace's listener calls this one from theirs, so
    /// commits keep reaching partners exactly as the node sends them.
    pub fn commit_listener(&self) -> CommitListener {
        commit_listener(&self.driver)
    }

    /// Asks for a partnership joined by invite.
    pub fn want(&self, partnership: PartnershipId) {
        self.driver.send(Command::Want(partnership));
    }

    /// A cheap handle for starting one-shot syncs (e.g. from the control socket).
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            driver: self.driver.clone(),
            shutdown: self.shutdown.clone(),
            tracker: self.tracker.clone(),
        }
    }

    /// Syncs once with each peer until both sides have nothing to send.
    pub async fn sync_once(&self, peers: &[PeerConfig], timeout: Duration) -> Vec<SyncOutcome> {
        self.handle().sync_once(peers, timeout).await
    }

    /// Stops listening and dialing, lets connections close, and stops the
    /// engine after its in-flight writes are committed.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.driver.send(Command::Shutdown);
        if let Some(thread) = self.engine_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.driver.send(Command::Shutdown);
    }
}

/// What the control socket needs of a running node.
#[derive(Clone)]
pub struct NodeHandle {
    driver: DriverHandle,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl NodeHandle {
    /// Asks for a partnership joined by invite.
    pub fn want(&self, partnership: PartnershipId) {
        self.driver.send(Command::Want(partnership));
    }

    /// Starts keeping a connection to a newly added peer.
    pub fn dial(&self, peer: PeerConfig) {
        self.tracker.spawn(dial_forever(
            peer.url,
            peer.key,
            self.driver.clone(),
            self.shutdown.clone(),
        ));
    }

    /// Syncs once with each peer until both sides have nothing to send.
    pub async fn sync_once(&self, peers: &[PeerConfig], timeout: Duration) -> Vec<SyncOutcome> {
        let runs = peers
            .iter()
            .map(|peer| self.sync_one(peer.clone(), timeout));
        futures_util::future::join_all(runs).await
    }

    async fn sync_one(&self, peer: PeerConfig, timeout: Duration) -> SyncOutcome {
        let mut events = self.driver.subscribe();
        let stop = self.shutdown.child_token();
        let ours = Arc::new(OnceLock::new());
        let mut dial = tokio::spawn(dial_once_owned(
            peer.url.clone(),
            peer.key,
            self.driver.clone(),
            stop.clone(),
            ours.clone(),
        ));
        let late = format!(
            "{} did not finish syncing within {} s",
            peer.url,
            timeout.as_secs()
        );
        let timed_out = move || Err(late);
        // A dial that fails ends the sync at once: no connection means no
        // event will ever come, and waiting out the timeout helps nobody.
        let result = {
            let waiting =
                tokio::time::timeout(timeout, wait_for_sync(&mut events, &ours, &peer.url));
            tokio::pin!(waiting);
            tokio::select! {
                waited = &mut waiting => {
                    stop.cancel();
                    match ((&mut dial).await.ok().and_then(Result::err), waited) {
                        (Some(unreachable), _) => Err(unreachable.to_string()),
                        (None, Ok(result)) => result,
                        (None, Err(_)) => timed_out(),
                    }
                }
                dialed = &mut dial => match dialed.ok().and_then(Result::err) {
                    Some(unreachable) => Err(unreachable.to_string()),
                    // The connection ran and closed; its events say how it ended.
                    None => waiting.await.unwrap_or_else(|_| timed_out()),
                },
            }
        };
        stop.cancel();
        SyncOutcome {
            url: peer.url,
            result,
        }
    }
}

async fn dial_once_owned(
    url: String,
    key: Option<OrgKey>,
    driver: DriverHandle,
    stop: CancellationToken,
    ours: Arc<OnceLock<ConnId>>,
) -> Result<(), crate::dialer::DialError> {
    dial_once(&url, key, driver, stop, Some(ours)).await
}

/// What one `sync_once` run achieved with one peer.
#[derive(Clone, Debug)]
pub struct SyncOutcome {
    pub url: String,
    pub result: Result<SyncReport, String>,
}

/// The figures of a completed sync.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncReport {
    pub peer: Option<OrgKey>,
    pub documents_updated: u64,
    pub changes_received: u64,
    pub changes_sent: u64,
    pub bytes_sent: u64,
    /// Why we refused changes the peer sent (they were not applied).
    pub refused: Vec<String>,
    /// Why the peer refused changes we sent.
    pub refused_by_peer: Vec<String>,
}

/// Waits for our connection to `url` to report in-sync, or to fail.
///
/// Only events of the connection this sync dialed count (`ours` is set
/// before it reads a frame, so before it can cause an event): an earlier
/// connection to the same peer may still be closing, and its `Closed` is
/// not ours (found by the relay's kill -9 loop, `tests/relay_kill_loop.rs`).
async fn wait_for_sync(
    events: &mut broadcast::Receiver<NodeEvent>,
    ours: &OnceLock<ConnId>,
    url: &str,
) -> Result<SyncReport, String> {
    let mut peer = None;
    let mut refused = Vec::new();
    let mut refused_by_peer = Vec::new();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Err("the node stopped".into()),
        };
        if event.url.as_deref() != Some(url) {
            continue;
        }
        if ours.get() != Some(&event.conn) {
            tracing::debug!(conn = event.conn.0, ours = ?ours.get(), "an event of another connection to the peer");
            continue;
        }
        match event.event {
            Event::Authenticated { peer: key, .. } => peer = Some(key),
            Event::InSync { stats, .. } => {
                return Ok(SyncReport {
                    peer,
                    documents_updated: stats.documents_updated,
                    changes_received: stats.changes_received,
                    changes_sent: stats.changes_sent,
                    bytes_sent: stats.bytes_sent,
                    refused,
                    refused_by_peer,
                });
            }
            Event::ChangesRefused { reason, .. } => refused.push(reason),
            Event::RefusedByPeer { reason, .. } => refused_by_peer.push(reason),
            Event::PeerError { message, .. } => return Err(format!("{url} refused: {message}")),
            Event::Refused { message, .. } => return Err(format!("{url}: {message}")),
            Event::Closed { .. } => {
                return Err(format!(
                    "{url} closed the connection before the sync finished"
                ));
            }
            Event::DocumentUpdated { .. } => {}
        }
    }
}

/// An organisation's node holds received changes this long before applying
/// them (`EngineConfig::coalesce_window_ms`). On a 260k-change document an
/// apply costs ~35 ms whether it carries one keystroke or a hundred, so
/// under 15% of a core allows about four applies (with their answers) a
/// second: at 250 ms a partner typing ten keys a second costs at most four
/// (measured: 9% of a core, against 53% applying every keystroke; see
/// `sync-keystrokes` in BENCHMARKS.md), and each change waits at most a
/// quarter of a second. Relays apply at once: a window there would add its
/// delay to every hop between two partners.
pub const NODE_COALESCE_WINDOW_MS: u64 = 250;

fn engine_config(options: &NodeOptions) -> EngineConfig {
    EngineConfig {
        role: if options.relay {
            PeerRole::Relay
        } else {
            PeerRole::Node
        },
        allowed_creators: options.allowed_creators.clone(),
        coalesce: true,
        coalesce_window_ms: if options.relay {
            0
        } else {
            NODE_COALESCE_WINDOW_MS
        },
        ..EngineConfig::default()
    }
}
