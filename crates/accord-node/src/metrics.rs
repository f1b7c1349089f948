//! What `/metrics` reports, in the Prometheus text format: connections,
//! frames and bytes each way, handshakes, refusals by reason, received
//! changes, storage failures, and sync lag (peers behind, and for how long).
//!
//! Plain atomic counters, bumped at the edges (the driver thread and the
//! listener), so the sync path never waits on a metrics lock. Nothing here
//! can hold a secret: counters only, labelled by error code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use accord_sync::{ErrorCode, Event, SyncLag};

/// The reason label of a refusal at the listener's connection limit.
pub const CAPACITY: &str = "Capacity";

/// The node's counters; one per node, shared by the driver and the listener.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    documents_updated: AtomicU64,
    changes_received: AtomicU64,
    in_sync: AtomicU64,
    /// From the engine's last [`SyncLag`] (refreshed about once a second).
    peers_behind: AtomicU64,
    sync_lag_ms: AtomicU64,
    slow_peer_disconnects: AtomicU64,
    storage_failures: AtomicU64,
    /// By reason; a map (not one field per code) so new codes need no change here.
    refusals: Mutex<BTreeMap<String, u64>>,
    peer_errors: Mutex<BTreeMap<String, u64>>,
    /// Changes refused by the trust rules (the connection stays open).
    changes_refused: AtomicU64,
    /// Changes of ours that peers refused.
    changes_refused_by_peers: AtomicU64,
}

impl Metrics {
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
    }

    /// Connections the driver holds now.
    pub fn set_open(&self, open: usize) {
        self.connections_open.store(open as u64, Relaxed);
    }

    pub fn frame_in(&self, bytes: usize) {
        self.frames_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub fn frame_out(&self, bytes: usize) {
        self.frames_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub fn slow_peer_disconnected(&self) {
        self.slow_peer_disconnects.fetch_add(1, Relaxed);
    }

    pub fn set_sync_lag(&self, lag: SyncLag) {
        self.peers_behind.store(lag.peers_behind as u64, Relaxed);
        self.sync_lag_ms.store(lag.longest_ms, Relaxed);
    }

    pub fn storage_failed(&self) {
        self.storage_failures.fetch_add(1, Relaxed);
    }

    /// A connection refused with `reason` (an `ErrorCode` name or [`CAPACITY`]).
    pub fn refused(&self, reason: &str) {
        bump(&self.refusals, reason);
    }

    /// Counts what an engine event says about connections and documents.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Authenticated { .. } => {
                self.handshakes.fetch_add(1, Relaxed);
            }
            Event::Refused { code, .. } => {
                if is_handshake_failure(*code) {
                    self.handshake_failures.fetch_add(1, Relaxed);
                }
                self.refused(&format!("{code:?}"));
            }
            Event::PeerError { code, .. } => bump(&self.peer_errors, &format!("{code:?}")),
            Event::DocumentUpdated { changes, .. } => {
                self.documents_updated.fetch_add(1, Relaxed);
                self.changes_received.fetch_add(*changes, Relaxed);
            }
            Event::InSync { .. } => {
                self.in_sync.fetch_add(1, Relaxed);
            }
            Event::ChangesRefused { changes, .. } => {
                self.changes_refused.fetch_add(*changes, Relaxed);
            }
            Event::RefusedByPeer { changes, .. } => {
                self.changes_refused_by_peers
                    .fetch_add(u64::from(*changes), Relaxed);
            }
            Event::Closed { .. } => {}
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = [
            (
                "accord_connections_open",
                "Websocket connections open now.",
                &self.connections_open,
            ),
            (
                "accord_peers_behind",
                "Connected peers that do not yet hold what we hold, or hold what we lack (refreshed every second).",
                &self.peers_behind,
            ),
        ];
        let counters = [
            (
                "accord_connections_total",
                "Websocket connections opened, both directions.",
                &self.connections_total,
            ),
            (
                "accord_frames_in_total",
                "Frames received from peers.",
                &self.frames_in,
            ),
            (
                "accord_bytes_in_total",
                "Bytes of frames received from peers.",
                &self.bytes_in,
            ),
            (
                "accord_frames_out_total",
                "Frames queued to peers.",
                &self.frames_out,
            ),
            (
                "accord_bytes_out_total",
                "Bytes of frames queued to peers.",
                &self.bytes_out,
            ),
            (
                "accord_handshakes_total",
                "Peers that proved their key.",
                &self.handshakes,
            ),
            (
                "accord_changes_refused_total",
                "Received changes refused by the trust rules (forged, unauthorised, built on a refused change).",
                &self.changes_refused,
            ),
            (
                "accord_changes_refused_by_peers_total",
                "Changes of ours that peers refused.",
                &self.changes_refused_by_peers,
            ),
            (
                "accord_handshake_failures_total",
                "Connections refused for authentication, timeout or version.",
                &self.handshake_failures,
            ),
            (
                "accord_documents_updated_total",
                "Documents updated by changes from peers.",
                &self.documents_updated,
            ),
            (
                "accord_changes_received_total",
                "Changes received from peers and stored.",
                &self.changes_received,
            ),
            (
                "accord_in_sync_total",
                "Times a connection reached identical heads for everything shared.",
                &self.in_sync,
            ),
            (
                "accord_slow_peer_disconnects_total",
                "Peers disconnected because they did not read.",
                &self.slow_peer_disconnects,
            ),
            (
                "accord_storage_failures_total",
                "Commits of received changes that failed.",
                &self.storage_failures,
            ),
        ];
        for (name, help, value) in gauge {
            write_one(&mut out, name, help, "gauge", value.load(Relaxed));
        }
        for (name, help, value) in counters {
            write_one(&mut out, name, help, "counter", value.load(Relaxed));
        }
        let lag_ms = self.sync_lag_ms.load(Relaxed);
        let _ = writeln!(
            out,
            "# HELP accord_sync_lag_seconds How long the longest-behind connected peer has been behind (0 when every peer is in sync).\n# TYPE accord_sync_lag_seconds gauge\naccord_sync_lag_seconds {}.{:03}",
            lag_ms / 1000,
            lag_ms % 1000
        );
        write_labelled(
            &mut out,
            "accord_refusals_total",
            "Connections we refused, by reason.",
            &self.refusals,
        );
        write_labelled(
            &mut out,
            "accord_peer_errors_total",
            "Connections the peer closed with an error, by reason.",
            &self.peer_errors,
        );
        out
    }
}

/// Refusals that mean the peer never got through the handshake.
fn is_handshake_failure(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Authentication | ErrorCode::Timeout | ErrorCode::Version
    )
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, reason: &str) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(reason.to_owned()).or_default() += 1;
}

fn write_one(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

fn write_labelled(out: &mut String, name: &str, help: &str, map: &Mutex<BTreeMap<String, u64>>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    for (reason, value) in map.iter() {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
    }
}
