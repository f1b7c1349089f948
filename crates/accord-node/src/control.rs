//! The local control socket: while `accord serve` holds the replica, other
//! `accord` commands run *inside* the node instead of failing on the lock.
//!
//! A Unix socket in the data folder (mode 0600: only this user), one JSON
//! request line `{"args": [...]}` and one JSON reply line
//! `{"code": N, "stdout": "...", "stderr": "..."}` per connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest request accepted (arguments of one command).
const MAX_REQUEST: u64 = 1024 * 1024;

/// The socket's file name inside the data folder.
pub const SOCKET_NAME: &str = "accord.sock";

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub args: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

/// Runs one command; called on a blocking thread.
pub type Handler = Arc<dyn Fn(Vec<String>) -> Reply + Send + Sync>;

pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET_NAME)
}

/// Serves the control socket until `shutdown`.
pub fn serve(
    data: &Path,
    handler: Handler,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<()> {
    let path = socket_path(data);
    // A socket left by a node that was killed is stale: we hold the replica lock now.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    restrict_to_owner(&path)?;
    let inner = tracker.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => { inner.spawn(answer(stream, handler.clone())); }
                    Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
                },
                () = shutdown.cancelled() => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

async fn answer(stream: UnixStream, handler: Handler) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => tokio::task::spawn_blocking(move || handler(request.args))
            .await
            .unwrap_or_else(|_| Reply {
                code: 70,
                stderr: "error: the running node hit an internal error running this command\n"
                    .into(),
                ..Reply::default()
            }),
        Err(e) => Reply {
            code: 2,
            stderr: format!("error: bad control request: {e}\n"),
            ..Reply::default()
        },
    };
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

/// Sends a command to the node serving `data`, if one is listening.
/// Returns `None` when no node answers (no socket, or a stale one).
pub fn call(data: &Path, args: Vec<String>) -> Option<Reply> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket_path(data)).ok()?;
    let mut request = serde_json::to_vec(&Request { args }).ok()?;
    request.push(b'\n');
    stream.write_all(&request).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}
