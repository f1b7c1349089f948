//! Live updates for open pages: change notices and the sync status, sent
//! as server-sent events on `/api/events`.
//!
//! A notice names only *what* changed (a document id); the page fetches
//! what it needs. So a notice can never carry stale content, and a page
//! that missed notices (it lagged, or reconnected) just refetches.

use std::collections::BTreeMap;
use std::convert::Infallible;

use accord_identity::OrgKey;
use accord_node::NodeEvent;
use accord_sync::{ConnId, Event, PeerRole};
use axum::Router;
use axum::extract::State;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::Web;

/// What an open page hears.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum PageEvent {
    /// A document (an agreement or a partnership's roster) changed, here or at a partner.
    Changed { doc: String },
    /// A connection to a partner or relay opened, closed, or finished a sync.
    Sync,
    /// The organisation exists and the node runs (after first-run setup).
    Ready,
    /// Notices were missed: refetch everything shown.
    Resync,
}

/// Who this node is connected to right now, and when it last was in sync.
#[derive(Debug, Default)]
pub(crate) struct SyncStatus {
    connections: BTreeMap<ConnId, Connection>,
    /// Unix seconds of the last moment some connection was fully in sync.
    last_sync: Option<i64>,
    /// The last refusal from or to a peer, until a sync succeeds: why
    /// nothing arrives (e.g. a relay that does not know us yet).
    problem: Option<String>,
    /// The latest refusals of changes (ours by a peer, or a peer's by us),
    /// newest last. Unlike `problem`, a later sync does not clear them: a
    /// refused change stays refused, and partners should know.
    refusals: Vec<String>,
}

/// How many refusals the page keeps showing.
const REFUSALS_SHOWN: usize = 5;

#[derive(Clone, Debug)]
struct Connection {
    url: Option<String>,
    peer: Option<OrgKey>,
    relay: bool,
}

/// The status as the page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct SyncView {
    pub connections: Vec<ConnectionView>,
    pub last_sync: Option<i64>,
    pub problem: Option<String>,
    pub refusals: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ConnectionView {
    pub url: Option<String>,
    pub key: Option<String>,
    pub fingerprint: Option<String>,
    pub relay: bool,
}

impl SyncStatus {
    /// Records what `event` says about connections; returns whether the
    /// page should hear about it, and what.
    fn apply(&mut self, event: &NodeEvent, now: i64) -> Option<PageEvent> {
        match &event.event {
            Event::Authenticated { conn, peer, role } => {
                let connection = Connection {
                    url: event.url.clone(),
                    peer: Some(*peer),
                    relay: *role == PeerRole::Relay,
                };
                self.connections.insert(*conn, connection);
                Some(PageEvent::Sync)
            }
            Event::InSync { .. } => {
                self.last_sync = Some(now);
                self.problem = None;
                Some(PageEvent::Sync)
            }
            Event::PeerError { message, .. } | Event::Refused { message, .. } => {
                let peer = event.url.as_deref().unwrap_or("a peer");
                self.problem = Some(format!("{peer}: {message}"));
                Some(PageEvent::Sync)
            }
            Event::ChangesRefused {
                changes, reason, ..
            } => {
                let peer = event.url.as_deref().unwrap_or("a peer");
                self.refused(format!("Refused {changes} change(s) from {peer}: {reason}"))
            }
            Event::RefusedByPeer {
                changes, reason, ..
            } => {
                let peer = event.url.as_deref().unwrap_or("A peer");
                self.refused(format!(
                    "{peer} refused {changes} of this organisation's change(s): {reason}"
                ))
            }
            Event::Closed { conn } => self.connections.remove(conn).map(|_| PageEvent::Sync),
            Event::DocumentUpdated { doc, .. } => Some(PageEvent::Changed {
                doc: doc.to_string(),
            }),
            // Kinds of event the engine may grow are not news for the
            // page by default.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn refused(&mut self, message: String) -> Option<PageEvent> {
        self.refusals.push(message);
        if self.refusals.len() > REFUSALS_SHOWN {
            self.refusals.remove(0);
        }
        Some(PageEvent::Sync)
    }

    pub(crate) fn view(&self) -> SyncView {
        SyncView {
            connections: self
                .connections
                .values()
                .map(|c| ConnectionView {
                    url: c.url.clone(),
                    key: c.peer.map(|k| k.to_hex()),
                    fingerprint: c.peer.map(|k| k.fingerprint().to_string()),
                    relay: c.relay,
                })
                .collect(),
            last_sync: self.last_sync,
            problem: self.problem.clone(),
            refusals: self.refusals.clone(),
        }
    }
}

/// Follows the node's events until the page shuts down.
pub(crate) async fn follow_node(web: Web, mut events: broadcast::Receiver<NodeEvent>) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = web.inner.shutdown.cancelled() => return,
        };
        let notice = match event {
            Ok(event) => match web.inner.sync.lock() {
                Ok(mut status) => status.apply(&event, accord_workspace::unix_now()),
                Err(_) => None,
            },
            Err(RecvError::Lagged(_)) => Some(PageEvent::Resync),
            Err(RecvError::Closed) => return,
        };
        if let Some(notice) = notice {
            web.notify(notice);
        }
    }
}

pub(crate) fn routes() -> Router<Web> {
    Router::new().route("/api/events", get(stream))
}

/// The event stream of one open page; it ends when the page shuts down.
async fn stream(State(web): State<Web>) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let events = web.inner.events.subscribe();
    let stop = web.inner.shutdown.clone();
    let stream = futures_util::stream::unfold((events, stop), |(mut events, stop)| async move {
        let next = tokio::select! {
            event = events.recv() => event,
            () = stop.cancelled() => return None,
        };
        let event = match next {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => PageEvent::Resync,
            Err(RecvError::Closed) => return None,
        };
        let data = serde_json::to_string(&event).unwrap_or_default();
        Some((Ok(sse::Event::default().data(data)), (events, stop)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OrgKey {
        accord_identity::OrgSecret::from_seed([3; 32]).public()
    }

    fn node_event(event: Event) -> NodeEvent {
        NodeEvent {
            conn: ConnId(1),
            url: Some("ws://127.0.0.1:1/sync".into()),
            event,
        }
    }

    #[test]
    fn connections_are_tracked_from_authentication_to_close() {
        let mut status = SyncStatus::default();
        let auth = node_event(Event::Authenticated {
            conn: ConnId(1),
            peer: key(),
            role: PeerRole::Relay,
        });
        assert_eq!(status.apply(&auth, 10), Some(PageEvent::Sync));
        let view = status.view();
        assert_eq!(view.connections.len(), 1);
        assert!(view.connections[0].relay);
        assert_eq!(view.connections[0].key, Some(key().to_hex()));
        let closed = node_event(Event::Closed { conn: ConnId(1) });
        assert_eq!(status.apply(&closed, 11), Some(PageEvent::Sync));
        assert!(status.view().connections.is_empty());
        // A second close (already gone) is not news.
        assert_eq!(status.apply(&closed, 12), None);
    }

    #[test]
    fn a_refusal_is_shown_until_a_sync_succeeds() {
        let mut status = SyncStatus::default();
        let refused = node_event(Event::PeerError {
            conn: ConnId(1),
            code: accord_sync::ErrorCode::NotAMember,
            message: "not a member of any partnership held here".into(),
        });
        status.apply(&refused, 10);
        let problem = status.view().problem.unwrap();
        assert!(
            problem.starts_with("ws://127.0.0.1:1/sync: not a member"),
            "{problem}"
        );
        let synced = node_event(Event::InSync {
            conn: ConnId(1),
            peer: key(),
            stats: Default::default(),
        });
        status.apply(&synced, 11);
        assert_eq!(status.view().problem, None);
        assert_eq!(status.view().last_sync, Some(11));
    }

    #[test]
    fn refusals_stay_shown_after_a_sync() {
        let mut status = SyncStatus::default();
        let refused = node_event(Event::ChangesRefused {
            conn: ConnId(1),
            doc: accord_model::DocId::from_bytes([1; 16]),
            peer: key(),
            changes: 2,
            reason: "a consultee may not change agreement text".into(),
        });
        assert_eq!(status.apply(&refused, 10), Some(PageEvent::Sync));
        let synced = node_event(Event::InSync {
            conn: ConnId(1),
            peer: key(),
            stats: Default::default(),
        });
        status.apply(&synced, 11);
        assert_eq!(
            status.view().refusals,
            vec![
                "Refused 2 change(s) from ws://127.0.0.1:1/sync: a consultee may not change agreement text"
                    .to_owned()
            ]
        );
        for n in 0..REFUSALS_SHOWN {
            let by_peer = node_event(Event::RefusedByPeer {
                conn: ConnId(1),
                doc: accord_model::DocId::from_bytes([1; 16]),
                changes: 1,
                reason: format!("reason {n}"),
            });
            status.apply(&by_peer, 12);
        }
        let refusals = status.view().refusals;
        assert_eq!(refusals.len(), REFUSALS_SHOWN, "only the latest are kept");
        assert!(
            refusals[REFUSALS_SHOWN - 1].ends_with("reason 4"),
            "{refusals:?}"
        );
        assert!(
            refusals[0].starts_with("ws://127.0.0.1:1/sync refused 1"),
            "{refusals:?}"
        );
    }

    #[test]
    fn page_events_are_tagged_json() {
        let json = serde_json::to_string(&PageEvent::Changed { doc: "abc".into() }).unwrap();
        assert_eq!(json, r#"{"type":"changed","doc":"abc"}"#);
    }
}
