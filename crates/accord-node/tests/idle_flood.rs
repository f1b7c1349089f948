//! Idle sockets against a real relay on loopback: hundreds of TCP
//! connections that never send a byte, and websockets that upgrade and
//! never speak, filling every connection slot. The relay must keep
//! answering, refuse what exceeds its slots at once (not hang), close the
//! idle ones at their deadlines, and then serve an honest peer.

mod common;

use std::time::Duration;

use accord_sync::wire::Frame;
use common::{get, relay};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

/// Raw sockets that never send a request (2 descriptors each in this process).
const SILENT_TCP: usize = 400;
const SLOTS: usize = 32;
/// Longer than the HTTP header deadline and the handshake deadline (10 s
/// each) plus the engine's one-second tick.
const DEADLINE: Duration = Duration::from_secs(40);

fn free_slots(health: &str) -> u64 {
    let json: serde_json::Value = serde_json::from_str(health).unwrap();
    json["free_connection_slots"].as_u64().unwrap()
}

/// Waits until the relay closes `stream` (a read returns end of file or an error).
async fn closed_by_relay(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_shed_and_honest_peers_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let node = relay(dir.path(), [0x1d; 32], SLOTS).await;
    let addr = node.local_addr().unwrap();
    let url = format!("ws://{addr}/sync");

    let mut silent_tcp = Vec::new();
    for _ in 0..SILENT_TCP {
        silent_tcp.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut silent_ws = Vec::new();
    for _ in 0..SLOTS {
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        silent_ws.push(ws);
    }

    // Flooded: health still answers, every slot is taken, and one more
    // websocket is refused at once with 503 rather than left hanging.
    let (status, body) = get(addr, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(free_slots(&body), 0, "{body}");
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a connection past the limit must be refused: {other:?}"),
    }

    // The silent websockets are closed at the handshake deadline, after the
    // relay's Hello and a Timeout error frame.
    let shed = async {
        for mut ws in silent_ws {
            let mut frames = Vec::new();
            while let Some(Ok(message)) = ws.next().await {
                if let tungstenite::Message::Binary(bytes) = message {
                    frames.push(Frame::decode(&bytes).expect("a frame"));
                }
            }
            assert!(
                frames.iter().any(|f| matches!(f, Frame::Error { .. })),
                "a silent peer is told why it is closed: {frames:?}"
            );
        }
    };
    tokio::time::timeout(DEADLINE, shed)
        .await
        .expect("silent websockets closed by the handshake deadline");
    // And the raw sockets by the HTTP header deadline.
    let raw = futures_util::future::join_all(silent_tcp.into_iter().map(closed_by_relay));
    tokio::time::timeout(DEADLINE, raw)
        .await
        .expect("silent TCP sockets closed by the header deadline");

    // Slots are free again and an honest peer is greeted.
    let (_, body) = get(addr, "/healthz").await;
    assert_eq!(free_slots(&body), SLOTS as u64, "{body}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("an honest peer connects after the flood");
    let hello = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("the relay greets promptly")
        .unwrap()
        .unwrap();
    assert!(matches!(
        Frame::decode(&hello.into_data()),
        Ok(Frame::Hello { .. })
    ));
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(
        metrics.contains("accord_refusals_total{reason=\"Capacity\"} 1"),
        "the capacity refusal is counted:\n{metrics}"
    );
    node.shutdown().await;
}
