//! `accord serve`: this organisation's node, with its web page.
//!
//! On a folder with no replica (and no `--org`), the page is served alone
//! first and asks for the organisation's name; once it has created the
//! replica, that server stops and the node starts on the same address,
//! with the same page state, so the browser's session carries on.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use accord_node::control;
use accord_node::{Node, NodeOptions};
use accord_store::StoreError;
use accord_web::Web;
use accord_workspace::{Workspace, WorkspaceError};
use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Ctx;
use super::net::{control_handler, wait_for_stop_signal};
use crate::output::Io;

pub fn serve(
    io: &mut Io<'_>,
    data: &Path,
    listen: SocketAddr,
    org: Option<&str>,
    open: bool,
) -> Result<()> {
    let web = if listen.ip().is_loopback() {
        Some(Web::new(data)?)
    } else {
        writeln!(
            io.err,
            "Note: the web page is served only on a loopback address (e.g. --listen 127.0.0.1:7420); {listen} is for partners."
        )?;
        None
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (ws, listen) = match open_or_create(io, data, org)? {
            Some(ws) => (Arc::new(ws), listen),
            None => match &web {
                Some(web) => match first_run(io, web, listen, open).await? {
                    Some(started) => started,
                    None => return Ok(()),
                },
                None => bail!(
                    "no organisation is set up in {} yet: pass --org \"Your organisation\" (or serve on 127.0.0.1 and set it up on the page)",
                    data.display()
                ),
            },
        };
        run_node(io, data, ws, listen, web, open).await
    })
}

/// The workspace in `data`; created when `--org` names it; `None` when
/// there is none and the page should ask.
fn open_or_create(io: &mut Io<'_>, data: &Path, org: Option<&str>) -> Result<Option<Workspace>> {
    match (Workspace::open(data), org) {
        (Ok(ws), _) => Ok(Some(ws)),
        (Err(WorkspaceError::Store(StoreError::NotInitialised { .. })), Some(name)) => {
            let ws = Workspace::init(data, name)?;
            writeln!(
                io.out,
                "Created the replica for {} in {}",
                ws.whoami().name,
                data.display()
            )?;
            Ok(Some(ws))
        }
        (Err(WorkspaceError::Store(StoreError::NotInitialised { .. })), None) => Ok(None),
        (Err(e), _) => Err(e.into()),
    }
}

/// Serves only the page until it has created the organisation. Returns
/// the workspace and the address actually bound (so the node reuses the
/// port the browser is on), or `None` if stopped first.
async fn first_run(
    io: &mut Io<'_>,
    web: &Web,
    listen: SocketAddr,
    open: bool,
) -> Result<Option<(Arc<Workspace>, SocketAddr)>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen} (is another program using it?)"))?;
    let addr = listener.local_addr()?;
    web.set_address(addr);
    writeln!(
        io.out,
        "No organisation is set up here yet: set it up on the page."
    )?;
    show_page(io, web, open)?;
    let created = web.first_run();
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(listener, setup_health().merge(web.router()))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    let ws = tokio::select! {
        ws = created => Some(ws.context("the page stopped before the organisation was created")?),
        () = wait_for_stop_signal() => None,
    };
    stop.cancel();
    let _ = server.await;
    let Some(ws) = ws else {
        return Ok(None);
    };
    writeln!(io.out, "Created the replica for {}", ws.whoami().name)?;
    Ok(Some((ws, addr)))
}

/// `/healthz` while the page waits for the organisation to be set up, so
/// a supervisor sees a live process that is not yet syncing.
fn setup_health() -> axum::Router {
    axum::Router::new().route(
        "/healthz",
        axum::routing::get(|| async {
            axum::Json(serde_json::json!({"status": "setting_up", "role": "node"}))
        }),
    )
}

async fn run_node(
    io: &mut Io<'_>,
    data: &Path,
    ws: Arc<Workspace>,
    listen: SocketAddr,
    web: Option<Web>,
    open: bool,
) -> Result<()> {
    let peers = ws.peers()?;
    let options = NodeOptions {
        listen: Some(listen),
        dial: peers.clone(),
        ..NodeOptions::default()
    };
    let routes = web.as_ref().map(Web::router);
    let node = Node::start(ws.replica().clone(), Some(ws.clone()), options, routes).await?;
    let addr = node.local_addr().unwrap_or(listen);
    if let Some(web) = &web {
        web.set_address(addr);
        web.attach(ws.clone(), Some((node.handle(), node.events())));
        share_commit_listener(&ws, &node, web);
    }
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let ctx = Arc::new(Ctx {
        ws: ws.clone(),
        node: Some(node.handle()),
    });
    control::serve(data, control_handler(ctx), stop.clone(), &tracker)?;
    let me = ws.whoami();
    writeln!(
        io.out,
        "Accord node for {} ({}) listening on ws://{addr}/sync",
        me.name, me.fingerprint
    )?;
    if let Some(web) = &web {
        show_page(io, web, open)?;
    }
    writeln!(
        io.out,
        "Syncing with {} configured peer(s). Other accord commands work meanwhile. Press Ctrl-C to stop.",
        peers.len()
    )?;
    io.out.flush()?;
    wait_for_stop_signal().await;
    writeln!(io.err, "Stopping: finishing in-flight writes...")?;
    if let Some(web) = &web {
        web.shutdown();
    }
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    node.shutdown().await;
    writeln!(io.err, "Stopped.")?;
    Ok(())
}

/// The workspace has one commit listener. `Node::start` installs the
/// node's (which hands commits, with their attestations, to the sync
/// driver); this replaces it with one that calls the node's and then tells
/// open pages, so edits made anywhere (the page, or `accord doc set`
/// through the control socket) reach partners and show up live.
fn share_commit_listener(ws: &Workspace, node: &Node, web: &Web) {
    let to_partners = node.commit_listener();
    let web = web.clone();
    ws.set_commit_listener(Arc::new(move |committed| {
        to_partners(committed);
        web.committed(committed);
    }));
}

/// Prints the page's address (it carries the secret token: printed for
/// the person, never logged) and opens it if asked.
fn show_page(io: &mut Io<'_>, web: &Web, open: bool) -> Result<()> {
    let url = web.url();
    writeln!(
        io.out,
        "Open {url} in your browser (the link is secret: it signs in as your organisation)."
    )?;
    io.out.flush()?;
    if open && let Err(e) = open_browser(&url) {
        writeln!(
            io.err,
            "Could not open a browser ({e}); open the link above yourself."
        )?;
    }
    Ok(())
}

fn open_browser(url: &str) -> std::io::Result<()> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut child| {
            // Reaped in the background: the browser may outlive this call.
            std::thread::spawn(move || child.wait());
        })
}
