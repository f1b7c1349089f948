//! One connection: the only code that touches a websocket.
//!
//! Both ends (tokio-tungstenite when we dial, axum when we listen) are
//! turned into the same two halves, a stream of [`Incoming`] and a sink of
//! frame bytes, so one loop serves both.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::driver::{Command, DriverHandle, OUTBOX_FRAMES, Outbound};
use accord_identity::OrgKey;
use accord_sync::ConnId;
use accord_sync::wire::MAX_FRAME;

/// Largest websocket message accepted: one frame plus headroom.
pub const MAX_WS_MESSAGE: usize = MAX_FRAME + 16 * 1024;
/// Largest write buffer per connection.
pub const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
/// A connection that has received nothing (not even a pong) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const PING_EVERY: Duration = Duration::from_secs(30);
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames written to a socket before one flush (bounded so one busy
/// connection's write cannot grow without limit; the outbox is bounded too).
const WRITE_BATCH: usize = 64;

/// What arrives on a websocket, whichever library produced it.
#[derive(Debug)]
pub enum Incoming {
    Frame(Vec<u8>),
    /// Pings, pongs: proof of life, nothing to do.
    Alive,
    Closed,
    /// The connection broke (reset, websocket protocol error, too large a message).
    Lost(String),
    /// A text message: the peer is not speaking our protocol.
    Invalid(String),
}

/// What we write on a websocket.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Vec<u8>),
    Ping,
    Close,
}

/// How this connection came about.
#[derive(Clone, Debug)]
pub struct LinkInfo {
    pub dialed: bool,
    pub expect: Option<OrgKey>,
    pub url: Option<String>,
    /// Learns the connection's id once the driver has registered it, before
    /// any of its frames is read: whoever waits on this connection's events
    /// (a one-shot sync) must not mistake an earlier connection's for them.
    pub registered: Option<Arc<OnceLock<ConnId>>>,
}

/// Runs one connection until either side closes or the node shuts down.
pub async fn run<I, O>(
    incoming: I,
    outgoing: O,
    info: LinkInfo,
    driver: DriverHandle,
    shutdown: CancellationToken,
) where
    I: Stream<Item = Incoming> + Unpin,
    O: Sink<Outgoing> + Unpin,
{
    let (outbox, frames) = mpsc::channel(OUTBOX_FRAMES);
    let Some(conn) = driver
        .connect(info.dialed, info.expect, info.url.clone(), outbox)
        .await
    else {
        return;
    };
    if let Some(registered) = &info.registered {
        let _ = registered.set(conn);
    }
    let span = tracing::info_span!(
        "connection",
        conn = conn.0,
        url = info.url.as_deref().unwrap_or("incoming")
    );
    // Instrumented, not entered: a span entered across `.await` stays
    // entered on whichever thread the task yields, and every connection's
    // log lines then carried the spans of the others polled there.
    serve(conn, incoming, outgoing, frames, &driver, shutdown)
        .instrument(span)
        .await;
    driver.send(Command::Disconnected { conn });
}

/// The connection's loop: frames in to the driver, the driver's frames out,
/// pings, until either side closes or the node shuts down.
async fn serve<I, O>(
    conn: ConnId,
    mut incoming: I,
    mut outgoing: O,
    mut frames: mpsc::Receiver<Outbound>,
    driver: &DriverHandle,
    shutdown: CancellationToken,
) where
    I: Stream<Item = Incoming> + Unpin,
    O: Sink<Outgoing> + Unpin,
{
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Incoming::Frame(bytes)) => {
                    last_heard = tokio::time::Instant::now();
                    driver.send(Command::Received { conn, bytes });
                }
                Some(Incoming::Alive) => last_heard = tokio::time::Instant::now(),
                Some(Incoming::Invalid(why)) => {
                    tracing::warn!(%why, "closing a connection that does not speak the protocol");
                    // Let the engine answer with an error frame, then close.
                    driver.send(Command::Received { conn, bytes: Vec::new() });
                }
                Some(Incoming::Lost(why)) => {
                    tracing::info!(%why, "connection lost");
                    break;
                }
                Some(Incoming::Closed) | None => break,
            },
            out = frames.recv() => match out {
                Some(Outbound::Frame(bytes)) => {
                    // Whatever else the engine has queued goes in the same write:
                    // a change's `Attest` and `Sync` frames then leave together.
                    let (batch, closing) = with_queued(bytes, &mut frames, WRITE_BATCH);
                    let sent = send_all_with_deadline(&mut outgoing, batch).await;
                    if sent && closing {
                        let _ = send_with_deadline(&mut outgoing, Outgoing::Close).await;
                    }
                    if !sent || closing {
                        break;
                    }
                }
                Some(Outbound::Close) | None => {
                    // Flush what the engine queued before the close (its error frame).
                    let mut batch = Vec::new();
                    while let Ok(Outbound::Frame(bytes)) = frames.try_recv() {
                        batch.push(Outgoing::Frame(bytes));
                    }
                    let _ = send_all_with_deadline(&mut outgoing, batch).await;
                    let _ = send_with_deadline(&mut outgoing, Outgoing::Close).await;
                    break;
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    tracing::info!("closing an idle connection");
                    break;
                }
                if !send_with_deadline(&mut outgoing, Outgoing::Ping).await {
                    break;
                }
            }
            () = shutdown.cancelled() => {
                let _ = send_with_deadline(&mut outgoing, Outgoing::Close).await;
                break;
            }
        }
    }
}

/// `first` and up to `limit - 1` frames queued behind it; whether a close
/// came next.
fn with_queued(
    first: Vec<u8>,
    frames: &mut mpsc::Receiver<Outbound>,
    limit: usize,
) -> (Vec<Outgoing>, bool) {
    let mut batch = vec![Outgoing::Frame(first)];
    while batch.len() < limit {
        match frames.try_recv() {
            Ok(Outbound::Frame(bytes)) => batch.push(Outgoing::Frame(bytes)),
            Ok(Outbound::Close) => return (batch, true),
            Err(_) => break,
        }
    }
    (batch, false)
}

/// Feeds `batch` to the socket and flushes once, all within the send deadline.
async fn send_all_with_deadline<O: Sink<Outgoing> + Unpin>(
    outgoing: &mut O,
    batch: Vec<Outgoing>,
) -> bool {
    let write = async {
        for message in batch {
            outgoing.feed(message).await?;
        }
        outgoing.flush().await
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

async fn send_with_deadline<O: Sink<Outgoing> + Unpin>(
    outgoing: &mut O,
    message: Outgoing,
) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, outgoing.send(message)).await,
        Ok(Ok(()))
    )
}

/// Adapts a tokio-tungstenite websocket (our dialing side).
pub fn tungstenite_halves<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
) -> (
    impl Stream<Item = Incoming> + Unpin,
    impl Sink<Outgoing> + Unpin,
)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    let (sink, stream) = ws.split();
    let incoming = stream.map(|m| match m {
        Ok(Message::Binary(b)) => Incoming::Frame(b.to_vec()),
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Incoming::Alive,
        Ok(Message::Close(_)) => Incoming::Closed,
        Ok(Message::Text(_)) => Incoming::Invalid("a text message".into()),
        Err(e) => Incoming::Lost(e.to_string()),
    });
    let outgoing = sink.with(|m: Outgoing| {
        futures_util::future::ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(match m {
            Outgoing::Frame(b) => Message::Binary(b.into()),
            Outgoing::Ping => Message::Ping(Vec::new().into()),
            Outgoing::Close => Message::Close(None),
        }))
    });
    (incoming, Box::pin(outgoing))
}

/// Adapts an axum websocket (our listening side).
pub fn axum_halves(
    ws: axum::extract::ws::WebSocket,
) -> (
    impl Stream<Item = Incoming> + Unpin,
    impl Sink<Outgoing> + Unpin,
) {
    use axum::extract::ws::Message;
    let (sink, stream) = ws.split();
    let incoming = stream.map(|m| match m {
        Ok(Message::Binary(b)) => Incoming::Frame(b.to_vec()),
        Ok(Message::Ping(_) | Message::Pong(_)) => Incoming::Alive,
        Ok(Message::Close(_)) => Incoming::Closed,
        Ok(Message::Text(_)) => Incoming::Invalid("a text message".into()),
        Err(e) => Incoming::Lost(e.to_string()),
    });
    let outgoing = sink.with(|m: Outgoing| {
        futures_util::future::ready(Ok::<_, axum::Error>(match m {
            Outgoing::Frame(b) => Message::Binary(b.into()),
            Outgoing::Ping => Message::Ping(Vec::new().into()),
            Outgoing::Close => Message::Close(None),
        }))
    });
    (incoming, Box::pin(outgoing))
}

/// The websocket limits we dial with.
pub fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}
