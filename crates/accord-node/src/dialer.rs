//! Dialing peers and relays, once or forever with backoff.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use accord_identity::OrgKey;
use accord_sync::ConnId;
use tokio_util::sync::CancellationToken;

use crate::driver::DriverHandle;
use crate::link::{self, LinkInfo};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A connection that lasted this long was healthy: start backing off afresh.
const HEALTHY: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a dial failed, in words for the person who configured the peer.
#[derive(Debug, thiserror::Error)]
#[error("could not reach {url}: {reason}")]
pub struct DialError {
    pub url: String,
    pub reason: String,
}

/// Connects once and runs the connection until it closes.
pub async fn dial_once(
    url: &str,
    expect: Option<OrgKey>,
    driver: DriverHandle,
    shutdown: CancellationToken,
    registered: Option<Arc<OnceLock<ConnId>>>,
) -> Result<(), DialError> {
    let connect =
        tokio_tungstenite::connect_async_with_config(url, Some(link::client_config()), true);
    let (ws, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            return Err(DialError {
                url: url.to_owned(),
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(DialError {
                url: url.to_owned(),
                reason: "timed out".into(),
            });
        }
    };
    let (incoming, outgoing) = link::tungstenite_halves(ws);
    let info = LinkInfo {
        dialed: true,
        expect,
        url: Some(url.to_owned()),
        registered,
    };
    link::run(incoming, outgoing, info, driver, shutdown).await;
    Ok(())
}

/// Keeps a connection to `url` up until shutdown: exponential backoff with
/// jitter between attempts, so many nodes do not retry in lockstep.
pub async fn dial_forever(
    url: String,
    expect: Option<OrgKey>,
    driver: DriverHandle,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    while !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        match dial_once(&url, expect, driver.clone(), shutdown.clone(), None).await {
            Ok(()) => tracing::info!(%url, "connection closed"),
            Err(e) => tracing::info!(error = %e, "peer unreachable; will retry"),
        }
        if started.elapsed() > HEALTHY {
            backoff = FIRST_BACKOFF;
        }
        let wait = jitter(backoff);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Between half and all of `base`, at random.
fn jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let fraction = if getrandom::fill(&mut byte).is_ok() {
        0.5 + f64::from(byte[0]) / 510.0
    } else {
        0.75
    };
    base.mul_f64(fraction)
}
