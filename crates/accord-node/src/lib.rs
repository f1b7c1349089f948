//! The running side of Accord: everything with sockets and threads.
//!
//! A [`Node`] wires the sans-IO [`accord_sync::Engine`] to the world: a
//! driver thread owns the engine and the replica's sync writes
//! ([`driver`]); each websocket is one task ([`link`]) whether we dialed it
//! ([`dialer`], with backoff) or accepted it ([`server`], axum). An
//! organisation's node and a relay are the same program with different
//! engine rules.

pub mod control;
mod courier;
mod dialer;
pub mod driver;
pub mod link;
pub mod metrics;
mod node;
mod server;
mod sync_states;

pub use dialer::DialError;
pub use driver::NodeEvent;
pub use node::{NODE_COALESCE_WINDOW_MS, Node, NodeHandle, NodeOptions, SyncOutcome, SyncReport};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("could not listen on {addr}: {source} (is another node or program using that port?)")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Workspace(#[from] accord_workspace::WorkspaceError),
}
