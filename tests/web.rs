//! The web page in a real headless Chromium: `tests/web/e2e.mjs` (with
//! npm's playwright-core) drives a relay and two organisations'
//! `accord serve` nodes through their pages. Screenshots of each step go
//! to `target/web-artifacts/`.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`), `node`, and
//! `npm ci` in `tests/web`. With `CI=true` a missing piece fails the test;
//! elsewhere it is skipped with a loud message.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::accord_bin;

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
