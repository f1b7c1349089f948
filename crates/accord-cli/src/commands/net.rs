//! Commands that reach other machines: serve, relay, sync, peers, invites.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use accord_identity::OrgKey;
use accord_node::control::{self, Reply};
use accord_node::{Node, NodeOptions, SyncOutcome};
use accord_store::{Replica, StoreError};
use accord_workspace::{Invite, PeerConfig, Workspace, normalise_url};
use anyhow::{Context, Result, bail};
use clap::Parser;

use super::{Ctx, dispatch};
use crate::cli::Cli;
use crate::output::{self, Io};

pub fn relay(
    io: &mut Io<'_>,
    data: &Path,
    listen: SocketAddr,
    allow_org: Vec<String>,
) -> Result<()> {
    let allowed = allow_org
        .iter()
        .map(|fp| check_fingerprint(fp))
        .collect::<Result<Vec<_>>>()?;
    let replica = match Replica::open(data) {
        Ok(replica) => replica,
        Err(StoreError::NotInitialised { .. }) => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| anyhow::anyhow!("no randomness for the relay key: {e}"))?;
            Replica::create(data, "Accord relay", seed, accord_workspace::unix_now())?
        }
        Err(e) => return Err(e.into()),
    };
    let key = replica.secret().public();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let options = NodeOptions {
            listen: Some(listen),
            relay: true,
            allowed_creators: (!allowed.is_empty()).then_some(allowed.clone()),
            ..NodeOptions::default()
        };
        let node = Node::start(Arc::new(replica), None, options, None).await?;
        let addr = node.local_addr().unwrap_or(listen);
        writeln!(
            io.out,
            "Accord relay listening on ws://{addr}/sync (data in {})",
            data.display()
        )?;
        writeln!(io.out, "Relay fingerprint: {}", key.fingerprint())?;
        writeln!(io.out, "Relay key: {key}")?;
        if allowed.is_empty() {
            writeln!(
                io.out,
                "Any organisation may start a partnership here (limit with --allow-org)."
            )?;
        } else {
            writeln!(
                io.out,
                "Only these organisations may start partnerships here: {}",
                allowed.join(", ")
            )?;
        }
        io.out.flush()?;
        wait_for_stop_signal().await;
        node.shutdown().await;
        Ok(())
    })
}

/// A fingerprint as `accord whoami` prints it: 16 hex digits, dashes optional.
fn check_fingerprint(text: &str) -> Result<String> {
    let hex: String = text.chars().filter(|c| *c != '-' && *c != ':').collect();
    if hex.len() != 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "{text:?} is not a fingerprint: use the 16-digit fingerprint `accord whoami` prints, e.g. 3f2a-91c0-77be-0d14"
        );
    }
    Ok(hex.to_ascii_lowercase())
}

pub(super) async fn wait_for_stop_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Runs commands sent by other `accord` processes while the node holds the replica.
pub(super) fn control_handler(ctx: Arc<Ctx>) -> control::Handler {
    Arc::new(move |args| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = {
            let mut io = Io {
                out: &mut out,
                err: &mut err,
            };
            match Cli::try_parse_from(std::iter::once("accord".to_owned()).chain(args)) {
                Err(e) => {
                    let code = if e.use_stderr() { 2 } else { 0 };
                    let target: &mut dyn std::io::Write =
                        if e.use_stderr() { io.err } else { io.out };
                    let _ = write!(target, "{}", e.render());
                    code
                }
                Ok(cli) => match dispatch(&ctx, cli.command, &mut io) {
                    Ok(()) => 0,
                    Err(e) => crate::errors::report(&e, io.err),
                },
            }
        };
        Reply {
            code,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        }
    })
}

pub fn sync(io: &mut Io<'_>, ctx: &Ctx, urls: &[String], timeout: u64, json: bool) -> Result<()> {
    let configured = ctx.ws.peers()?;
    let peers: Vec<PeerConfig> = if urls.is_empty() {
        configured
    } else {
        urls.iter()
            .map(|u| {
                let url = normalise_url(u)?;
                let key = configured.iter().find(|p| p.url == url).and_then(|p| p.key);
                Ok(PeerConfig { url, key })
            })
            .collect::<Result<_>>()?
    };
    if peers.is_empty() {
        bail!(
            "no peers or relays to sync with: add one with `accord peer add URL`, or accept an invite with `accord join CODE`"
        );
    }
    let timeout = Duration::from_secs(timeout.max(1));
    let outcomes = match &ctx.node {
        Some(node) => tokio::runtime::Handle::current().block_on(node.sync_once(&peers, timeout)),
        None => sync_with_temporary_node(&ctx.ws, &peers, timeout)?,
    };
    report_sync(io, &outcomes, json)
}

/// See `DebugCommand::PushLoop`: prints `N` only after every configured
/// peer acknowledged holding item N. Stops at the first failed sync.
pub fn push_loop(
    io: &mut Io<'_>,
    ctx: &Ctx,
    doc: &str,
    prefix: &str,
    count: u32,
    timeout: u64,
) -> Result<()> {
    if ctx.node.is_some() {
        bail!("this command cannot run inside a running node: stop `accord serve` first");
    }
    let peers = ctx.ws.peers()?;
    if peers.is_empty() {
        bail!("no peers or relays to push to: add one with `accord peer add URL`");
    }
    let timeout = Duration::from_secs(timeout.max(1));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = Node::start(
            ctx.ws.replica().clone(),
            Some(ctx.ws.clone()),
            NodeOptions::default(),
            None,
        )
        .await?;
        let pushed = push_each(io, &ctx.ws, &node, &peers, (doc, prefix, count), timeout).await;
        node.shutdown().await;
        pushed
    })
}

async fn push_each(
    io: &mut Io<'_>,
    ws: &Workspace,
    node: &Node,
    peers: &[PeerConfig],
    (doc, prefix, count): (&str, &str, u32),
    timeout: Duration,
) -> Result<()> {
    for n in 1..=count {
        super::docs::add_numbered_item(ws, doc, "objectives", "text", &format!("{prefix}-{n}"))?;
        for outcome in node.sync_once(peers, timeout).await {
            if let Err(e) = outcome.result {
                bail!("item {n} was not acknowledged by {}: {e}", outcome.url);
            }
        }
        writeln!(io.out, "{n}")?;
        io.out.flush()?;
    }
    Ok(())
}

pub(super) fn sync_with_temporary_node(
    ws: &Arc<Workspace>,
    peers: &[PeerConfig],
    timeout: Duration,
) -> Result<Vec<SyncOutcome>> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = Node::start(
            ws.replica().clone(),
            Some(ws.clone()),
            NodeOptions::default(),
            None,
        )
        .await?;
        let outcomes = node.sync_once(peers, timeout).await;
        node.shutdown().await;
        Ok(outcomes)
    })
}

fn report_sync(io: &mut Io<'_>, outcomes: &[SyncOutcome], json: bool) -> Result<()> {
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if json {
        let rows: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| match &o.result {
                Ok(r) => serde_json::json!({"url": o.url, "ok": true, "peer": r.peer, "documents_updated": r.documents_updated,
                    "changes_received": r.changes_received, "changes_sent": r.changes_sent, "bytes_sent": r.bytes_sent}),
                Err(e) => serde_json::json!({"url": o.url, "ok": false, "error": e}),
            })
            .collect();
        output::json(io, &rows)?;
    } else {
        for o in outcomes {
            match &o.result {
                Ok(r) => {
                    let who = r
                        .peer
                        .map(|k| k.fingerprint().to_string())
                        .unwrap_or_default();
                    writeln!(
                        io.out,
                        "synced with {} ({who}): {} document(s) updated, {} change(s) received, {} sent",
                        o.url, r.documents_updated, r.changes_received, r.changes_sent
                    )?;
                }
                Err(e) => writeln!(io.err, "failed: {e}")?,
            }
        }
    }
    if failed > 0 {
        bail!("could not sync with {failed} of {} peer(s)", outcomes.len());
    }
    Ok(())
}

pub fn peer_add(io: &mut Io<'_>, ctx: &Ctx, url: &str, key: Option<&str>) -> Result<()> {
    let key: Option<OrgKey> = key
        .map(|k| k.parse())
        .transpose()
        .context("--key is not a public key")?;
    let url = normalise_url(url)?;
    let added = ctx.ws.add_peer(&url, key)?;
    if let (true, Some(node)) = (added, &ctx.node) {
        node.dial(PeerConfig {
            url: url.clone(),
            key,
        });
    }
    writeln!(io.out, "{} {url}", if added { "Added" } else { "Updated" })?;
    Ok(())
}

pub fn peer_list(io: &mut Io<'_>, ws: &Workspace, json: bool) -> Result<()> {
    let peers = ws.peers()?;
    if json {
        return output::json(io, &peers);
    }
    if peers.is_empty() {
        writeln!(
            io.out,
            "No peers yet. Add one with: accord peer add ws://HOST:PORT"
        )?;
    }
    for p in peers {
        let pinned = p
            .key
            .map(|k| k.fingerprint().to_string())
            .unwrap_or_else(|| "key not yet known".into());
        writeln!(io.out, "{}  ({pinned})", p.url)?;
    }
    Ok(())
}

pub fn peer_remove(io: &mut Io<'_>, ws: &Workspace, url: &str) -> Result<()> {
    let url = normalise_url(url)?;
    if ws.remove_peer(&url)? {
        writeln!(io.out, "Removed {url}")?;
        Ok(())
    } else {
        bail!("{url} is not a configured peer: see `accord peer list`")
    }
}

pub fn invite(
    io: &mut Io<'_>,
    ws: &Workspace,
    partnership: &str,
    member: &str,
    relay: Option<&str>,
    relay_key: Option<&str>,
    json: bool,
) -> Result<()> {
    let relay_key: Option<OrgKey> = relay_key
        .map(|k| k.parse())
        .transpose()
        .context("--relay-key is not a public key")?;
    let configured = ws.peers()?;
    let peer = match relay {
        Some(url) => Some((url.to_owned(), relay_key)),
        None => configured.first().map(|p| (p.url.clone(), p.key)),
    };
    let invite = ws.invite(
        partnership,
        member,
        peer.as_ref().map(|(u, k)| (u.as_str(), *k)),
    )?;
    let code = invite.encode();
    if json {
        return output::json(io, &serde_json::json!({"code": code, "invite": invite}));
    }
    writeln!(io.out, "{code}")?;
    writeln!(
        io.err,
        "Send this code to the invited organisation. They run: accord join CODE"
    )?;
    if invite.peer.is_none() {
        writeln!(
            io.err,
            "Note: the code names no relay or peer; they will need `accord peer add URL` too."
        )?;
    }
    Ok(())
}

pub fn join(io: &mut Io<'_>, ctx: &Ctx, code: &str) -> Result<()> {
    let invite = Invite::decode(code)?;
    let known: Vec<String> = ctx.ws.peers()?.into_iter().map(|p| p.url).collect();
    ctx.ws.join(&invite)?;
    if let Some(node) = &ctx.node {
        node.want(invite.partnership);
        if let Some(peer) = invite.peer.clone().filter(|p| !known.contains(&p.url)) {
            node.dial(peer);
        }
    }
    writeln!(io.out, "Joined {:?}.", invite.name)?;
    writeln!(
        io.out,
        "Next: accord sync (or keep accord serve running) to fetch its agreements."
    )?;
    Ok(())
}
