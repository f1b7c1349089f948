//! `/metrics` on a real relay on loopback: counters move with what peers
//! do, refusals are counted by reason, and no secret is exposed.

mod common;

use std::net::SocketAddr;

use accord_node::NodeEvent;
use accord_sync::wire::Frame;
use accord_sync::{Event, PeerRole};
use common::{get, relay};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

const SEED: [u8; 32] = [0x5e; 32];

/// The value of the sample named exactly `sample` (with its labels).
fn value(body: &str, sample: &str) -> u64 {
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{body}"))
}

/// Opens a websocket, reads the relay's `Hello`, sends `frames`, and
/// returns once the relay reports it refused the connection.
async fn refused_after(
    addr: SocketAddr,
    events: &mut broadcast::Receiver<NodeEvent>,
    frames: Vec<Vec<u8>>,
) -> Event {
    let url = format!("ws://{addr}/sync");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = ws.next().await.unwrap().unwrap();
    assert!(matches!(
        Frame::decode(&hello.into_data()),
        Ok(Frame::Hello { .. })
    ));
    for frame in frames {
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    loop {
        let event = events.recv().await.unwrap().event;
        if matches!(event, Event::Refused { .. }) {
            return event;
        }
    }
}

#[tokio::test]
async fn metrics_count_connections_frames_and_refusals_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let node = relay(dir.path(), SEED, 0).await;
    let addr = node.local_addr().unwrap();
    let mut events = node.events();

    let garbage = b"not a frame".to_vec();
    refused_after(addr, &mut events, vec![garbage.clone()]).await;
    let impostor = accord_identity::OrgSecret::from_seed([9; 32]).public();
    let hello = Frame::Hello {
        org: *impostor.as_bytes(),
        nonce: [1; 32],
        role: PeerRole::Node,
    }
    .encode();
    let proof = Frame::Proof {
        signature: vec![0; 64],
    }
    .encode();
    let sent_bytes = (garbage.len() + hello.len() + proof.len()) as u64;
    refused_after(addr, &mut events, vec![hello, proof]).await;

    let (status, body) = get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(value(&body, "accord_connections_total"), 2);
    assert_eq!(value(&body, "accord_frames_in_total"), 3);
    assert_eq!(value(&body, "accord_bytes_in_total"), sent_bytes);
    // Per connection our Hello and the error frame, plus our Proof on the second.
    assert_eq!(value(&body, "accord_frames_out_total"), 5);
    assert_eq!(value(&body, "accord_handshakes_total"), 0);
    // No authenticated peer, so nobody is behind.
    assert_eq!(value(&body, "accord_peers_behind"), 0);
    assert!(
        body.contains("# TYPE accord_sync_lag_seconds gauge\naccord_sync_lag_seconds 0.000\n"),
        "{body}"
    );
    assert_eq!(value(&body, "accord_handshake_failures_total"), 1);
    assert_eq!(
        value(&body, "accord_refusals_total{reason=\"Protocol\"}"),
        1
    );
    assert_eq!(
        value(&body, "accord_refusals_total{reason=\"Authentication\"}"),
        1
    );
    assert!(body.contains("# TYPE accord_connections_open gauge"));
    let secret_hex: String = SEED.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        !body.contains(&secret_hex),
        "the secret key leaked into /metrics"
    );

    let (status, health) = get(addr, "/healthz").await;
    assert!(
        status.contains("200") && health.contains("\"status\":\"ok\""),
        "{health}"
    );
    node.shutdown().await;
}
