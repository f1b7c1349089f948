//! Helpers shared by the node's loopback tests.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use accord_node::{Node, NodeOptions};
use accord_store::Replica;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A relay on 127.0.0.1 with a fresh replica in `dir` (key from `seed`);
/// `max_connections` 0 keeps the node's default.
pub async fn relay(dir: &std::path::Path, seed: [u8; 32], max_connections: usize) -> Node {
    let replica = Arc::new(Replica::create(dir, "Relay", seed, 1).unwrap());
    let options = NodeOptions {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        relay: true,
        max_connections,
        ..NodeOptions::default()
    };
    Node::start(replica, None, options, None).await.unwrap()
}

/// A plain HTTP/1.1 GET; returns the status line and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}
