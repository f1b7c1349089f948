//! Running the `accord` binary against a temporary data folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn accord_bin() -> &'static str {
    env!("CARGO_BIN_EXE_accord")
}

/// One organisation's replica in a temporary folder.
pub struct Org {
    _dir: tempfile::TempDir,
    pub data: PathBuf,
}

impl Org {
    /// A folder with no replica yet.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        Self { _dir: dir, data }
    }

    /// A folder with an initialised replica for `name`.
    pub fn init(name: &str) -> Self {
        let org = Self::empty();
        org.ok(&["init", "--org", name]);
        org
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(accord_bin());
        cmd.arg("--data")
            .arg(&self.data)
            .args(args)
            .env_remove("ACCORD_DATA")
            // `ACCORD_TEST_LOG=debug` shows more of a failing child's story.
            .env(
                "ACCORD_LOG",
                std::env::var("ACCORD_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            );
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run accord")
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "accord {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs a command that must fail; returns (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "accord {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_no_panic(&stderr);
        (out.status.code().unwrap_or(-1), stderr)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("accord {args:?} printed invalid JSON ({e}): {out}"))
    }

    pub fn key(&self) -> String {
        self.json(&["whoami", "--json"])["key"]
            .as_str()
            .expect("key")
            .to_owned()
    }

    /// Creates an agreement of `kind` in `partnership`; returns its id.
    pub fn new_doc(&self, partnership: &str, kind: &str, title: &str) -> String {
        self.ok(&["doc", "new", partnership, "--kind", kind, "--title", title])
            .trim()
            .to_owned()
    }

    /// The invite code `accord invite` prints for `member` (its first line).
    pub fn invite(&self, partnership: &str, member: &str) -> String {
        let out = self.ok(&["invite", partnership, "--member", member]);
        out.lines().next().unwrap_or_default().trim().to_owned()
    }

    /// Adds `member` (another organisation's replica) to a partnership.
    pub fn add_member(&self, partnership: &str, name: &str, member: &Org, role: &str) {
        let key = member.key();
        self.ok(&[
            "member",
            "add",
            partnership,
            "--name",
            name,
            "--key",
            &key,
            "--role",
            role,
        ]);
    }

    /// Runs `doc edit DOC` with an editor that applies a `sed` expression.
    pub fn edit_with_sed(&self, doc: &str, sed: &str) -> Output {
        let editor = script(
            self.data.parent().expect("data has a parent"),
            "editor.sh",
            &format!("sed -i '{sed}' \"$1\""),
        );
        let out = self
            .command(&["doc", "edit", doc])
            .env("EDITOR", &editor)
            .output()
            .expect("run accord");
        assert!(
            out.status.success(),
            "doc edit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn replica_file(&self) -> PathBuf {
        self.data.join("replica.redb")
    }

    /// The agreement as JSON (`doc show --format json`).
    pub fn doc(&self, doc: &str) -> Value {
        self.json(&["doc", "show", doc, "--format", "json"])
    }
}

/// A number from the environment variable `name`, if set (a test fails
/// clearly on a value that is not a number).
pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}"))
    })
}

/// The seed a test replays from `name`, or a fresh one (odd, never 0, as
/// the xorshift generators need).
pub fn seed_from_env(name: &str) -> u64 {
    env_number(name).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    })
}

pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "accord panicked:\n{stderr}"
    );
}

/// Writes an executable shell script (used as $EDITOR).
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}
