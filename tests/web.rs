//! The web page in a real headless Chromium: `tests/web/e2e.mjs` (with
//! npm's playwright-core) drives a relay and two organisations'
//! `accord serve` nodes through their pages. Screenshots of each step go
//! to `target/web-artifacts/`.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`), `node`, and
//! `npm ci` in `tests/web`. With `CI=true` a missing piece fails the test;
//! elsewhere it is skipped with a loud message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{Org, accord_bin};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What is missing to run the browser test, if anything.
fn missing(chromium: &Path, web: &Path) -> Option<String> {
    if !chromium.exists() {
        return Some(format!("{} (apt-get install chromium)", chromium.display()));
    }
    if !web.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "{}/node_modules (run `npm ci` there)",
            web.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("node (apt-get install nodejs)".into()),
    }
}

#[test]
fn the_web_page_in_a_real_browser() {
    let web = repo().join("tests/web");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if let Some(what) = missing(&chromium, &web) {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "the browser test cannot run: missing {what}");
        eprintln!("\n*** SKIPPED the web page's browser test: missing {what} ***\n");
        return;
    }
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("web-artifacts");
    // Screenshots of an earlier run would be mistaken for this one's.
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = Command::new("node")
        .arg(web.join("e2e.mjs"))
        .current_dir(&web)
        .env("ACCORD_BIN", accord_bin())
        .env("ACCORD_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
    assert!(stdout.contains("all web steps passed"), "{stdout}");
}

/// One HTTP/1.1 request over a fresh connection; returns the whole answer.
fn http(addr: &str, request_head: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to serve");
    write!(stream, "{request_head}Connection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

/// Without a browser: `serve` on an empty folder (first run) prints the
/// secret link; nothing answers without it, a forged `Host` is refused,
/// and the link signs in. The token never reaches the log.
#[test]
fn serve_prints_a_secret_link_that_alone_signs_in() {
    let org = Org::empty();
    let mut child = org
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("ACCORD_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn accord serve");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("Open http://"))
        .expect("serve printed the page's link");
    let url = line.split_whitespace().nth(1).expect("a URL").to_owned();
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, token) = rest.split_once("/?token=").expect("a token in the URL");
    let head = |path: &str, host: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}")
    };

    let refused = http(addr, &head("/api/state", addr, ""));
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let port = addr.rsplit(':').next().unwrap();
    let rebinding = http(
        addr,
        &head(
            &format!("/?token={token}"),
            &format!("evil.example:{port}"),
            "",
        ),
    );
    assert!(
        rebinding.starts_with("HTTP/1.1 403") && rebinding.contains("DNS-rebinding"),
        "{rebinding}"
    );

    let signed_in = http(addr, &head(&format!("/?token={token}"), addr, ""));
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let cookie = signed_in
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let state = http(
        addr,
        &head("/api/state", addr, &format!("Cookie: {cookie}\r\n")),
    );
    assert!(state.starts_with("HTTP/1.1 200"), "{state}");
    assert!(state.contains(r#""phase":"first_run""#), "{state}");
    // A supervisor's health check needs no token, even before setup.
    let health = http(addr, &head("/healthz", addr, ""));
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains(r#""status":"setting_up""#),
        "{health}"
    );

    child.kill().expect("stop serve");
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("read log");
    let _ = child.wait();
    assert!(!log.contains(token), "the token reached the log:\n{log}");
}
