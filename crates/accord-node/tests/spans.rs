//! Logs carry one span per connection: whatever a connection's task logs
//! is inside its own `connection` span, and no other connection's.

mod common;

use std::sync::{Arc, Mutex};

use accord_node::NodeEvent;
use accord_sync::Event;
use common::relay;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Records, for every event logged inside a `connection` span, how many
/// `connection` spans enclose it.
#[derive(Clone, Default)]
struct ConnectionSpans(Arc<Mutex<Vec<(String, usize)>>>);

impl<S> tracing_subscriber::Layer<S> for ConnectionSpans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let depth = scope.filter(|span| span.name() == "connection").count();
        if depth > 0 {
            let what = event.metadata().name().to_owned();
            self.0.lock().unwrap().push((what, depth));
        }
    }
}

/// Waits until the relay has refused `count` connections.
async fn refusals(events: &mut broadcast::Receiver<NodeEvent>, count: usize) {
    let mut seen = 0;
    while seen < count {
        if matches!(events.recv().await.unwrap().event, Event::Refused { .. }) {
            seen += 1;
        }
    }
}

#[tokio::test]
async fn each_connection_logs_inside_its_own_span_only() {
    let spans = ConnectionSpans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let node = relay(dir.path(), [0x5f; 32], 0).await;
    let url = format!("ws://{}/sync", node.local_addr().unwrap());
    let mut events = node.events();
    // Three connections open at once, their tasks interleaved on this
    // one-thread runtime; each then speaks something else and is closed.
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws.next().await.unwrap().unwrap();
        sockets.push(ws);
    }
    for ws in &mut sockets {
        // Text is not the protocol: the connection's task says so (logged
        // in its span) and the engine refuses the connection.
        ws.send(Message::Text("not the protocol".into()))
            .await
            .unwrap();
    }
    refusals(&mut events, 3).await;
    for mut ws in sockets {
        while let Some(Ok(_)) = ws.next().await {}
    }
    node.shutdown().await;

    let seen = spans.0.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the connections logged nothing in their spans"
    );
    assert!(
        seen.iter().all(|(_, depth)| *depth == 1),
        "events inside more than one connection's span: {seen:?}"
    );
}
