//! The servers the relay benchmarks measure: the real relay (a `Node` with
//! `relay: true`, exactly what `accord relay` starts) and, as the baseline,
//! a bare tokio-tungstenite server that broadcasts each message of one
//! writer to every subscriber.
//!
//! The benchmarks run each in a child process of `accord-bench` (hidden
//! subcommands `serve-relay` and `serve-bare`), so that its memory (VmRSS
//! in `/proc/PID/status`) is the server's alone and its threads are not
//! the load generator's. The CI smoke, which cannot re-execute the bench
//! binary from a test harness, runs the relay in-process instead.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_identity::{OrgKey, OrgSecret};
use accord_node::{Node, NodeOptions};
use accord_store::Replica;
use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::sync_net::SEED_RELAY;

/// The relay's organisation key (its replica is created from [`SEED_RELAY`]).
pub fn relay_key() -> OrgKey {
    OrgSecret::from_seed(SEED_RELAY).public()
}

/// Creates the relay's replica in `data`, as `accord relay` does on first start.
pub fn create_relay_replica(data: &Path) -> Result<()> {
    Replica::create(data, "Bench relay", SEED_RELAY, 1)?;
    Ok(())
}

/// Resident and peak memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/{pid}/status` (`self` for this process).
pub fn memory_of(pid: &str) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib = line.split_whitespace().nth(1).context("malformed line")?;
        Ok(kib.parse()?)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU time (user + system) a process has used so far, from `/proc/{pid}/stat`.
pub fn cpu_of(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; count from after it.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every common platform.
    Ok(Duration::from_millis(ticks * 10))
}

/// A server running in a child process. It prints `listening ADDR` once
/// ready and stops when its stdin closes.
pub struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
}

impl ChildServer {
    /// The relay on the replica in `data` (see [`create_relay_replica`]).
    pub fn relay(data: &Path, max_connections: usize) -> Result<ChildServer> {
        let data = data.to_str().context("the temp dir is not UTF-8")?;
        let max = max_connections.to_string();
        Self::spawn(&["serve-relay", data, "--max-connections", &max])
    }

    pub fn bare() -> Result<ChildServer> {
        Self::spawn(&["serve-bare"])
    }

    fn spawn(args: &[&str]) -> Result<ChildServer> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            bail!("the {} child did not start: {line:?}", args[0]);
        };
        let addr = addr.parse()?;
        let stdin = child.stdin.take();
        Ok(ChildServer { child, stdin, addr })
    }

    pub fn memory(&self) -> Result<Memory> {
        memory_of(&self.child.id().to_string())
    }

    pub fn cpu(&self) -> Result<Duration> {
        cpu_of(&self.child.id().to_string())
    }

    /// Closes the child's stdin and waits (at most 60 s) for it to shut down.
    pub fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "the server exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        bail!("the server did not stop within 60 s of being asked")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the relay on `data` on the current runtime, on 127.0.0.1:0.
pub async fn start_relay(data: &Path, max_connections: usize) -> Result<Node> {
    let replica = Arc::new(Replica::open(data)?);
    let options = NodeOptions {
        listen: Some("127.0.0.1:0".parse()?),
        relay: true,
        max_connections,
        ..NodeOptions::default()
    };
    Ok(Node::start(replica, None, options, None).await?)
}

/// Body of `accord-bench serve-relay DATA`: the relay until stdin closes.
pub fn serve_relay(data: &Path, max_connections: usize) -> Result<()> {
    // `ACCORD_LOG=debug` shows the relay's own timeline on stderr, to tell
    // its time from the load generator's.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("ACCORD_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = start_relay(data, max_connections).await?;
        let addr = node.local_addr().context("the relay is not listening")?;
        println!("listening {addr}");
        wait_for_stdin_to_close().await;
        node.shutdown().await;
        Ok(())
    })
}

async fn wait_for_stdin_to_close() {
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
}

/// Body of `accord-bench serve-bare`: a broadcast server until stdin closes.
///
/// A client's first message says what it is: the text `pub` (every binary
/// message it sends is broadcast) or `sub` (answered with `ok` once it is
/// subscribed, then sent every broadcast message).
pub fn serve_bare() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        let (tx, _) = broadcast::channel::<Vec<u8>>(4096);
        tokio::select! {
            () = accept_bare(listener, tx) => {}
            () = wait_for_stdin_to_close() => {}
        }
        Ok(())
    })
}

async fn accept_bare(listener: TcpListener, tx: broadcast::Sender<Vec<u8>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                bare_connection(ws, tx).await;
            }
        });
    }
}

async fn bare_connection(
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tx: broadcast::Sender<Vec<u8>>,
) {
    let Some(Ok(Message::Text(role))) = ws.next().await else {
        return;
    };
    if role.as_str() == "pub" {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Binary(bytes) = message {
                let _ = tx.send(bytes.to_vec());
            }
        }
        return;
    }
    let mut rx = tx.subscribe();
    if ws.send(Message::Text("ok".into())).await.is_err() {
        return;
    }
    while let Ok(bytes) = rx.recv().await {
        if ws.send(Message::Binary(bytes.into())).await.is_err() {
            return;
        }
    }
}

/// Where the relay under test runs.
pub enum RelayHost {
    /// A child process (the benchmarks): its memory is its own.
    Child(ChildServer),
    /// This process (the CI smokes): memory figures include the clients.
    InProcess(Node),
}

impl RelayHost {
    pub fn addr(&self) -> Result<SocketAddr> {
        match self {
            RelayHost::Child(server) => Ok(server.addr),
            RelayHost::InProcess(node) => node.local_addr().context("the relay is not listening"),
        }
    }

    pub fn memory(&self) -> Result<Memory> {
        match self {
            RelayHost::Child(server) => server.memory(),
            RelayHost::InProcess(_) => memory_of("self"),
        }
    }

    /// The relay's CPU time so far (in-process: the whole process's).
    pub fn cpu(&self) -> Result<Duration> {
        match self {
            RelayHost::Child(server) => server.cpu(),
            RelayHost::InProcess(_) => cpu_of("self"),
        }
    }

    /// Shuts the relay down and waits until its replica is closed.
    pub async fn stop(self) -> Result<()> {
        match self {
            RelayHost::Child(server) => tokio::task::spawn_blocking(move || server.stop()).await?,
            RelayHost::InProcess(node) => {
                node.shutdown().await;
                Ok(())
            }
        }
    }
}
