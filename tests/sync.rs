//! Sync between organisations, end to end: real `accord relay`, `accord
//! serve` and `accord sync` processes on 127.0.0.1 with ephemeral ports.
//!
//! Every wait is bounded and driven by an event: a line a child prints, a
//! command's JSON output reaching a condition (polled with a short back-off
//! until a deadline), or a process exiting. Every child is killed when its
//! guard drops, so a failed assertion never leaves a relay or node behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Org;

/// How long any single awaited event may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);
/// `--timeout` given to every `accord sync`.
pub(crate) const SYNC_TIMEOUT: &str = "20";

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A running child process. Its stdout is read line by line (for waiting on
/// events) and its stderr is collected (for failure messages). Dropping it
/// kills the process.
pub(crate) struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub(crate) fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let log = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            lines,
            stdout,
            stderr,
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits for a stdout line containing `needle` and returns it.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} printed no line containing {needle:?} within {DEADLINE:?}\nstdout: {}\nstderr: {}",
                    self.name,
                    self.stdout(),
                    self.stderr()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    // Let the stderr reader catch up with the last words.
                    std::thread::sleep(Duration::from_millis(50));
                    panic!(
                        "{} exited ({status:?}) before printing a line containing {needle:?}\nstdout: {}\nstderr: {}",
                        self.name,
                        self.stdout(),
                        self.stderr()
                    )
                }
            }
        }
    }

    /// The next stdout line, or `None` once the process has exited (or
    /// printed nothing more within `DEADLINE`, which is a failure for callers
    /// that expect a line).
    pub(crate) fn next_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(DEADLINE).ok()
    }

    /// Every stdout line not read yet, once the process has exited on its
    /// own (within `DEADLINE`).
    pub(crate) fn remaining_lines(&mut self) -> Vec<String> {
        self.wait_exit(DEADLINE);
        self.lines.iter().collect()
    }

    /// Waits (bounded) for the process to exit on its own.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The reader threads see EOF right after exit.
                let _ = self.lines.recv_timeout(Duration::from_millis(0));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}\nstdout: {}\nstderr: {}",
                self.name,
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Whether the process has exited (without waiting).
    pub(crate) fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

/// Calls `check` until it returns `Ok`, with a short back-off, failing the
/// test with the last reason once `DEADLINE` has passed.
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(20);
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: still not true after {DEADLINE:?}: {why}")
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(250));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Relay
// ---------------------------------------------------------------------------

/// A running `accord relay`, with the address and key it printed.
pub(crate) struct Relay {
    pub(crate) proc: Proc,
    pub(crate) url: String,
    pub(crate) port: u16,
    pub(crate) key: String,
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.closed { "closed" } else { "open" };
        write!(f, "{state}: {}", self.detail)
    }
}

impl Relay {
    /// Starts a relay on `home`'s folder (port 0: any free port).
    pub(crate) fn start(home: &Org, port: u16) -> Relay {
        let listen = format!("127.0.0.1:{port}");
        let mut proc = Proc::spawn(
            "accord relay",
            home.command(&["relay", "--listen", &listen]),
        );
        let line = proc.wait_line("listening on");
        let url = ws_url(&line);
        let port = url
            .trim_start_matches("ws://127.0.0.1:")
            .trim_end_matches("/sync")
            .parse()
            .unwrap_or_else(|e| panic!("no port in {url:?}: {e}"));
        proc.wait_line("Relay fingerprint:");
        let key = proc
            .wait_line("Relay key:")
            .trim_start_matches("Relay key:")
            .trim()
            .to_owned();
        assert_eq!(key.len(), 64, "relay key line: {key:?}");
        Relay {
            proc,
            url,
            port,
            key,
        }
    }

    /// Starts a relay on a port it used before. The port was ours a moment
    /// ago; retry briefly in case the kernel still holds it.
    pub(crate) fn restart(home: &Org, port: u16) -> Relay {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Relay::start(home, port)));
            match attempt {
                Ok(relay) => return relay,
                Err(panic) if Instant::now() >= deadline => std::panic::resume_unwind(panic),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub(crate) fn health(&self) -> Value {
        let response = http_get(self.port, "/healthz");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        serde_json::from_str(body.trim())
            .unwrap_or_else(|e| panic!("/healthz body is not JSON ({e}): {response}"))
    }

    /// One unlabelled counter or gauge from `/metrics`.
    pub(crate) fn metric(&self, name: &str) -> u64 {
        let response = http_get(self.port, "/metrics");
        response
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in /metrics: {response}"))
    }
}

/// The `ws://...` URL in a line such as `... listening on ws://127.0.0.1:PORT/sync ...`.
fn ws_url(line: &str) -> String {
    line.split_whitespace()
        .find(|word| word.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no ws:// URL in {line:?}"))
        .to_owned()
}

/// A plain HTTP/1.1 GET on 127.0.0.1, returning the whole response.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect for HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("reading GET {path}: {e} (so far: {response})"));
    response
}

// ---------------------------------------------------------------------------
// Organisations
// ---------------------------------------------------------------------------

/// The result of one `accord sync --json`.
pub(crate) struct SyncRun {
    pub(crate) ok: bool,
    pub(crate) code: Option<i32>,
    pub(crate) rows: Vec<Value>,
    pub(crate) stderr: String,
}

impl SyncRun {
    /// Whether this run moved anything in either direction.
    pub(crate) fn moved_anything(&self) -> bool {
        self.rows.iter().any(|row| {
            ["documents_updated", "changes_received", "changes_sent"]
                .iter()
                .any(|k| row[*k].as_u64().unwrap_or(0) > 0)
        })
    }
}

pub(crate) fn sync(org: &Org, urls: &[&str]) -> SyncRun {
    let mut args = vec!["sync", "--json", "--timeout", SYNC_TIMEOUT];
    args.extend_from_slice(urls);
    let out = org.run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    crate::support::assert_no_panic(&stderr);
    let rows = serde_json::from_str::<Vec<Value>>(&stdout).unwrap_or_default();
    SyncRun {
        ok: out.status.success(),
        code: out.status.code(),
        rows,
        stderr: format!("{stderr}\nstdout: {stdout}"),
    }
}

/// `accord sync` that must succeed.
pub(crate) fn sync_ok(org: &Org, who: &str, urls: &[&str]) -> SyncRun {
    let run = sync(org, urls);
    assert!(
        run.ok,
        "{who}: accord sync {urls:?} failed (exit {:?}): {}",
        run.code, run.stderr
    );
    assert!(
        run.rows.iter().all(|r| r["ok"] == true),
        "{who}: a peer failed: {:?}",
        run.rows
    );
    run
}

/// The ids of the documents `org` holds.
pub(crate) fn doc_ids(org: &Org) -> Vec<String> {
    let mut ids: Vec<String> = org
        .json(&["doc", "list", "--json"])
        .as_array()
        .expect("doc list is an array")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

pub(crate) fn heads(org: &Org, doc: &str) -> Vec<String> {
    let mut heads: Vec<String> = org.doc(doc)["heads"]
        .as_array()
        .expect("heads")
        .iter()
        .map(|h| h.as_str().expect("head").to_owned())
        .collect();
    heads.sort();
    heads
}

pub(crate) fn purpose(org: &Org, doc: &str) -> String {
    org.doc(doc)["fields"]["purpose"]
        .as_str()
        .expect("purpose is text")
        .to_owned()
}

/// Appends a sentence to the MOU's purpose as this replica currently has it.
fn append_purpose(org: &Org, doc: &str, sentence: &str) {
    let current = purpose(org, doc);
    let text = if current.is_empty() {
        sentence.to_owned()
    } else {
        format!("{current} {sentence}")
    };
    org.ok(&["doc", "set", doc, "purpose", &text]);
}

/// Why the replicas differ on some document, if they do.
fn differences(orgs: &[(&str, &Org)], docs: &[String]) -> Option<String> {
    for doc in docs {
        let (first_name, first) = orgs[0];
        let expected = heads(first, doc);
        for (name, org) in &orgs[1..] {
            let got = heads(org, doc);
            if got != expected {
                return Some(format!(
                    "document {doc}: {first_name} has heads {expected:?}, {name} has {got:?}"
                ));
            }
        }
    }
    None
}

/// Sync rounds (each organisation in turn, through the relay) until one
/// whole round moves nothing and every replica has the same heads.
fn sync_until_quiet(orgs: &[(&str, &Org)], docs: &[String]) {
    eventually("replicas converge", || {
        let mut moved = false;
        for (name, org) in orgs {
            moved |= sync_ok(org, name, &[]).moved_anything();
        }
        if moved {
            return Err("the last round still moved changes".into());
        }
        differences(orgs, docs).map_or(Ok(()), Err)
    });
}

/// Three organisations in one partnership, each holding every agreement,
/// all synced through one relay.
struct Partnership {
    relay: Relay,
    _relay_home: Org,
    a: Org,
    b: Org,
    c: Org,
    mou: String,
    /// mou, values, dispute.
    docs: Vec<String>,
}

impl Partnership {
    fn orgs(&self) -> [(&str, &Org); 3] {
        [("A", &self.a), ("B", &self.b), ("C", &self.c)]
    }
}

fn partnership_through_relay() -> Partnership {
    let relay_home = Org::empty();
    let relay = Relay::start(&relay_home, 0);
    let a = Org::init("Alpha Trust");
    let b = Org::init("Beta Centre");
    let c = Org::init("Gamma CVS");

    a.ok(&["partnership", "new", "Sharing Our Strengths"]);
    let mou = a.new_doc("Sharing", "mou", "Memorandum of Understanding");
    let values = a.new_doc("Sharing", "values", "Shared values");
    let dispute = a.new_doc("Sharing", "dispute", "Dispute process");
    a.ok(&["doc", "set", &mou, "purpose", "We work together."]);
    for (name, org) in [("Beta Centre", &b), ("Gamma CVS", &c)] {
        a.add_member("Sharing", name, org, "decision-maker");
    }
    a.ok(&["peer", "add", &relay.url, "--key", &relay.key]);
    let invite = |member: &str| {
        let code = a.invite("Sharing", member);
        assert!(
            code.starts_with("accord-invite:"),
            "invite printed {code:?}"
        );
        code
    };
    let (invite_b, invite_c) = (invite("Beta"), invite("Gamma"));

    sync_ok(&a, "A", &[]);
    b.ok(&["join", &invite_b]);
    sync_ok(&b, "B", &[]);
    c.ok(&["join", &invite_c]);
    sync_ok(&c, "C", &[]);

    let docs = vec![mou.clone(), values, dispute];
    let mut sorted = docs.clone();
    sorted.sort();
    for (name, org) in [("A", &a), ("B", &b), ("C", &c)] {
        assert_eq!(
            doc_ids(org),
            sorted,
            "{name} should hold all three agreements after joining and syncing"
        );
    }
    Partnership {
        relay,
        _relay_home: relay_home,
        a,
        b,
        c,
        mou,
        docs,
    }
}

/// Starts `accord serve` on an ephemeral port; returns the process and its URL.
pub(crate) fn serve(org: &Org, name: &str) -> (Proc, String) {
    let mut node = Proc::spawn(name, org.command(&["serve", "--listen", "127.0.0.1:0"]));
    let url = ws_url(&node.wait_line("listening on"));
    node.wait_line("configured peer");
    (node, url)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn three_organisations_converge_through_a_relay() {
    let p = partnership_through_relay();
    for (name, org) in p.orgs() {
        assert_eq!(purpose(org, &p.mou), "We work together.", "{name}");
    }

    // Offline, all three append their own sentence to the same text field.
    let sentences = [
        ("A", &p.a, "Alpha hosts the monthly meeting."),
        ("B", &p.b, "Beta runs the drop-in sessions."),
        ("C", &p.c, "Gamma finds volunteering placements."),
    ];
    for (_, org, sentence) in sentences {
        append_purpose(org, &p.mou, sentence);
    }
    // A different document too, so more than one document moves.
    p.b.ok(&[
        "doc",
        "add",
        &p.docs[1],
        "values",
        "name=Listening",
        "description=We hear each other out.",
    ]);

    sync_until_quiet(&p.orgs(), &p.docs);

    let expected = purpose(&p.a, &p.mou);
    for (name, org) in p.orgs() {
        let text = purpose(org, &p.mou);
        assert_eq!(text, expected, "{name}'s purpose differs from A's");
        assert!(text.starts_with("We work together."), "{name}: {text:?}");
        for (_, _, sentence) in sentences {
            assert!(
                text.contains(sentence),
                "{name}'s purpose lost {sentence:?}: {text:?}"
            );
        }
    }
    assert!(
        p.relay.proc.stderr().lines().all(|l| !l.contains("ERROR")),
        "relay logged errors:\n{}",
        p.relay.proc.stderr()
    );
    // Each one-shot sync left what the relay holds of every document on
    // disk (the node holds sync states back and saves them as it stops), so
    // the next reconnect starts from there.
    let relay_key: accord_identity::OrgKey = p.relay.key.parse().unwrap();
    for (name, org) in p.orgs() {
        let replica = accord_store::Replica::open(&org.data).unwrap();
        for doc in &p.docs {
            let id: accord_model::DocId = doc.parse().unwrap();
            let state = replica
                .sync_state(id.as_bytes(), relay_key.as_bytes())
                .unwrap();
            assert!(
                state.is_some(),
                "{name} kept no sync state of {doc} for the relay"
            );
        }
    }
}

#[test]
fn two_organisations_sync_directly_without_the_relay() {
    let mut p = partnership_through_relay();
    p.relay.proc.kill9();

    let (b_node, b_url) = serve(&p.b, "B's accord serve");
    p.c.ok(&["peer", "add", &b_url, "--key", &p.b.key()]);

    // B edits through its running node (the command is forwarded to it).
    let out = p.b.run(&[
        "doc",
        "set",
        &p.mou,
        "purpose",
        "We work together. Beta edits while serving.",
    ]);
    assert!(
        out.status.success(),
        "forwarded doc set failed: {}\nnode stderr: {}",
        String::from_utf8_lossy(&out.stderr),
        b_node.stderr()
    );
    assert!(
        purpose(&p.b, &p.mou).contains("Beta edits while serving."),
        "forwarded doc show does not show the forwarded edit"
    );
    // C edits offline.
    p.c.ok(&[
        "doc",
        "add",
        &p.mou,
        "objectives",
        "text=Gamma places 40 volunteers",
    ]);

    // C syncs with B alone (the relay is gone).
    let run = sync_ok(&p.c, "C", &[&b_url]);
    let b_key = p.b.key();
    assert_eq!(run.rows[0]["url"], b_url.as_str());
    assert_eq!(run.rows[0]["peer"], b_key.as_str(), "{:?}", run.rows);
    assert!(
        run.rows[0]["documents_updated"].as_u64().unwrap_or(0) >= 1,
        "C should have received B's edit: {:?}",
        run.rows
    );
    assert!(
        purpose(&p.c, &p.mou).contains("Beta edits while serving."),
        "C did not receive B's edit; node stderr: {}",
        b_node.stderr()
    );
    // B's node received C's objective from C's sync.
    eventually("B's node holds C's objective", || {
        let objectives = p.b.doc(&p.mou)["fields"]["objectives"].to_string();
        if objectives.contains("Gamma places 40 volunteers") {
            Ok(())
        } else {
            Err(format!("B's objectives: {objectives}"))
        }
    });
    eventually("B and C have the same heads", || {
        sync_ok(&p.c, "C", &[&b_url]);
        differences(&[("B", &p.b), ("C", &p.c)], &p.docs).map_or(Ok(()), Err)
    });

    // Another edit on B while it serves reaches C with C's next sync.
    p.b.ok(&["doc", "set", &p.mou, "communication", "Weekly calls."]);
    assert_eq!(p.b.doc(&p.mou)["fields"]["communication"], "Weekly calls.");
    sync_ok(&p.c, "C", &[&b_url]);
    assert_eq!(
        p.c.doc(&p.mou)["fields"]["communication"],
        "Weekly calls.",
        "C's next sync did not bring B's edit; node stderr: {}",
        b_node.stderr()
    );
    assert!(differences(&[("B", &p.b), ("C", &p.c)], &p.docs).is_none());
}

#[test]
fn relay_killed_during_a_sync_loses_nothing_it_acknowledged() {
    let relay_home = Org::empty();
    let mut relay = Relay::start(&relay_home, 0);
    let port = relay.port;
    let a = Org::init("Alpha Trust");
    let b = Org::init("Beta Centre");
    a.ok(&["partnership", "new", "Sharing Our Strengths"]);
    let mou = a.new_doc("Sharing", "mou", "MOU");
    a.add_member("Sharing", "Beta Centre", &b, "decision-maker");
    a.ok(&["peer", "add", &relay.url, "--key", &relay.key]);
    let code = a.invite("Sharing", "Beta");

    // Much to sync: 100 objectives (one change each), then five texts
    // of 120 kB each (a sync message of several frames).
    let added = a.ok(&[
        "debug",
        "ack-loop",
        &mou,
        "--prefix",
        "objective",
        "--count",
        "100",
    ]);
    assert_eq!(added.lines().count(), 100);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut prose = |len: usize| {
        let mut text = String::with_capacity(len + 16);
        while text.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(&format!("{:x} ", seed));
        }
        text
    };
    // (Fields that start empty: replacing a template text with a long one
    // is slow, see the report.)
    for field in ["purpose", "communication"] {
        a.ok(&["doc", "set", &mou, field, &prose(120_000)]);
    }
    for _ in 0..3 {
        let item = format!("text={}", prose(120_000));
        a.ok(&["doc", "add", &mou, "objectives", &item]);
    }

    // Kill -9 the relay once A's connection is open (it holds a connection
    // slot), i.e. while it is receiving A's changes.
    let idle_slots = relay.health()["free_connection_slots"].as_u64().unwrap();
    let mut syncing = Proc::spawn("A's accord sync", a.command(&["sync", "--timeout", "10"]));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let health = relay.health();
        if health["free_connection_slots"].as_u64().unwrap() < idle_slots {
            break;
        }
        if syncing.has_exited() {
            // Finished before we saw it: the kill still lands after the
            // relay's last write, which must then be durable.
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never saw A's connection; sync stderr: {}",
            syncing.stderr()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    relay.proc.kill9();
    let interrupted = syncing.wait_exit(Duration::from_secs(15));
    eprintln!(
        "sync interrupted by kill -9: {interrupted}; stdout: {} stderr: {}",
        syncing.stdout(),
        syncing.stderr()
    );
    crate::support::assert_no_panic(&syncing.stderr());

    // Restart on the same folder and port; sync until it succeeds.
    let mut relay = Relay::restart(&relay_home, port);
    assert_eq!(relay.port, port);
    eventually("A syncs with the restarted relay", || {
        let run = sync(&a, &[]);
        if run.ok { Ok(()) } else { Err(run.stderr) }
    });
    // Everything is acknowledged now: kill -9 again, restart, and let a
    // fresh member fetch the partnership from the relay alone.
    relay.proc.kill9();
    let _relay = Relay::restart(&relay_home, port);
    b.ok(&["join", &code]);
    sync_ok(&b, "B", &[]);
    let docs = doc_ids(&a);
    assert_eq!(doc_ids(&b), docs);
    for doc in &docs {
        let (theirs, ours) = (b.doc(doc), a.doc(doc));
        assert_eq!(
            theirs["heads"], ours["heads"],
            "B's copy of {doc} (fetched from the restarted relay) has other heads than A's"
        );
        assert!(
            theirs["fields"] == ours["fields"],
            "B's copy of {doc} (fetched from the restarted relay) differs from A's"
        );
    }
    let objectives = b.doc(&mou)["fields"]["objectives"].as_array().map(Vec::len);
    assert_eq!(objectives, Some(103));
}

#[test]
fn non_members_and_impersonators_are_refused() {
    let p = partnership_through_relay();

    // D is in no roster: the relay refuses it and it receives nothing.
    let d = Org::init("Delta Outsiders");
    d.ok(&["peer", "add", &p.relay.url, "--key", &p.relay.key]);
    let run = sync(&d, &[]);
    assert!(!run.ok, "a non-member's sync should fail: {}", run.stderr);
    assert_ne!(run.code, Some(0));
    let out = d.run(&["sync", "--timeout", SYNC_TIMEOUT]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a member"),
        "the refusal should say why: {stderr}"
    );
    assert!(doc_ids(&d).is_empty(), "D must receive no documents");
    assert_eq!(
        d.json(&["partnership", "list", "--json"]),
        serde_json::json!([])
    );

    // C dials A's node but expects B: A's proof does not match, C refuses.
    let (a_node, a_url) = serve(&p.a, "A's accord serve");
    p.c.ok(&["peer", "add", &a_url, "--key", &p.b.key()]);
    let before: Vec<Vec<String>> = p.docs.iter().map(|d| heads(&p.c, d)).collect();
    p.a.ok(&[
        "doc",
        "set",
        &p.mou,
        "communication",
        "Only for real partners.",
    ]);
    let out = p.c.run(&["sync", &a_url, "--timeout", SYNC_TIMEOUT]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "syncing with the wrong organisation should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("expected organisation"),
        "the error should name the authentication failure: {stderr}\nA's node: {}",
        a_node.stderr()
    );
    let after: Vec<Vec<String>> = p.docs.iter().map(|d| heads(&p.c, d)).collect();
    assert_eq!(before, after, "C must take nothing from the impostor");
}

#[test]
fn garbage_and_oversized_frames_close_only_that_connection() {
    let p = partnership_through_relay();
    let port = p.relay.port;
    let url = p.relay.url.clone();

    // A syncs normally while the raw connections misbehave.
    p.a.ok(&["doc", "set", &p.mou, "communication", "Monthly meetings."]);
    let mut a_sync = Proc::spawn(
        "A's accord sync",
        p.a.command(&["sync", "--timeout", SYNC_TIMEOUT]),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Random bytes that do not start with the magic byte.
        let mut garbage = vec![0u8; 200];
        getrandom::fill(&mut garbage).unwrap();
        garbage[0] = 0xFF;
        let (frames, how) = raw_exchange(&url, garbage).await;
        assert_error_frame(&frames, &how, "random bytes");

        // The right header, then bytes that are no frame.
        let mut garbage = vec![0u8; 200];
        getrandom::fill(&mut garbage).unwrap();
        garbage[..3].copy_from_slice(&[b'A', accord_sync::wire::PROTOCOL_VERSION, 0x7F]);
        let (frames, how) = raw_exchange(&url, garbage).await;
        assert_error_frame(&frames, &how, "a malformed frame");

        // 3 MiB in one message: more than any frame may be.
        let (frames, how) = raw_exchange(&url, vec![b'A'; 3 * 1024 * 1024]).await;
        eprintln!("after 3 MiB: {how:?}, {} frame(s)", frames.len());
        assert!(
            how.closed,
            "the oversized message's connection stayed open: {how:?}"
        );
    });

    let status = a_sync.wait_exit(DEADLINE);
    assert!(
        status.success(),
        "A's sync failed while others misbehaved: {}\n{}",
        a_sync.stdout(),
        a_sync.stderr()
    );
    sync_ok(&p.a, "A", &[]);
    sync_ok(&p.b, "B", &[]);
    assert_eq!(
        p.b.doc(&p.mou)["fields"]["communication"],
        "Monthly meetings."
    );

    let response = http_get(port, "/healthz");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "GET /healthz: {response}"
    );
    assert!(
        response.contains(r#""status":"ok""#),
        "GET /healthz: {response}"
    );
    assert_eq!(p.relay.health()["role"], "relay");
}

/// How a raw connection ended.
struct Ending {
    closed: bool,
    detail: String,
}

/// Opens a websocket to `url`, sends `payload` as one binary message, and
/// collects binary messages until the relay closes the connection (bounded).
async fn raw_exchange(url: &str, payload: Vec<u8>) -> (Vec<Vec<u8>>, Ending) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (mut ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect within the deadline")
        .expect("websocket handshake with the relay");
    let sent = ws.send(Message::Binary(payload.into())).await;
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let ending = loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                break Ending {
                    closed: false,
                    detail: format!("still open after 15 s (send: {sent:?})"),
                };
            }
            Ok(None) => {
                break Ending {
                    closed: true,
                    detail: "stream ended".into(),
                };
            }
            Ok(Some(Ok(Message::Binary(bytes)))) => frames.push(bytes.to_vec()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                break Ending {
                    closed: true,
                    detail: format!("close frame {frame:?}"),
                };
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                break Ending {
                    closed: true,
                    detail: format!("connection error {e}"),
                };
            }
        }
    };
    (frames, ending)
}

/// The relay answered with an error frame (`A`, the protocol version, variant
/// `Error`), then closed.
fn assert_error_frame(frames: &[Vec<u8>], how: &Ending, what: &str) {
    const ERROR_VARIANT: u8 = 6;
    eprintln!("after {what}: {how:?}; frames received:");
    for frame in frames {
        eprintln!("  {}", frame[..frame.len().min(80)].escape_ascii());
    }
    assert!(
        how.closed,
        "after {what}, the connection stayed open: {how:?}"
    );
    let error = frames
        .iter()
        .find(|f| f.len() > 2 && f[2] == ERROR_VARIANT)
        .unwrap_or_else(|| panic!("after {what}, no error frame among {frames:?} ({how:?})"));
    assert_eq!(error[0], b'A', "magic byte of {error:?}");
    assert_eq!(
        error[1],
        accord_sync::wire::PROTOCOL_VERSION,
        "protocol version of {error:?}"
    );
    assert_eq!(error[3], 0, "error code (Protocol) of {error:?}");
    for frame in frames {
        assert_eq!(
            &frame[..2],
            &[b'A', accord_sync::wire::PROTOCOL_VERSION],
            "every frame starts with A and the protocol version"
        );
    }
}

#[test]
fn a_serving_node_receives_changes_live() {
    let p = partnership_through_relay();
    // B's peer list already has the relay (from its invite).
    let peers = p.b.json(&["peer", "list", "--json"]);
    assert_eq!(peers[0]["url"], p.relay.url.as_str(), "{peers}");
    let (b_node, _) = serve(&p.b, "B's accord serve");

    append_purpose(&p.a, &p.mou, "Alpha adds this while Beta serves.");
    sync_ok(&p.a, "A", &[]);
    eventually("B's running node shows A's edit without syncing", || {
        let text = purpose(&p.b, &p.mou);
        if text.contains("Alpha adds this while Beta serves.") {
            Ok(())
        } else {
            Err(format!(
                "B's purpose is {text:?}; node stderr: {}",
                b_node.stderr()
            ))
        }
    });
    assert_eq!(heads(&p.b, &p.mou), heads(&p.a, &p.mou));

    // And the other way: an edit forwarded to B's node is pushed to the relay.
    p.b.ok(&[
        "doc",
        "set",
        &p.mou,
        "communication",
        "Beta pushes this live.",
    ]);
    eventually("A fetches B's live edit from the relay", || {
        sync_ok(&p.a, "A", &[]);
        let got = p.a.doc(&p.mou)["fields"]["communication"].clone();
        if got == "Beta pushes this live." {
            Ok(())
        } else {
            Err(format!("A's communication is {got}"))
        }
    });
}

/// How a fake peer ends the one connection it accepts, after reading the
/// dialer's first frame.
#[derive(Clone, Copy)]
enum Hangup {
    /// Drops the TCP connection without a websocket close (a crash).
    Abrupt,
    /// Sends a websocket close (a peer shutting down cleanly).
    Clean,
}

/// A websocket server on an ephemeral port that accepts one connection,
/// reads one message and hangs up. Returns its URL.
fn fake_peer(hangup: Hangup) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/sync", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            use futures_util::StreamExt;
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let accept = tokio::time::timeout(DEADLINE, listener.accept()).await;
            let Ok(Ok((stream, _))) = accept else { return };
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let _ = tokio::time::timeout(DEADLINE, ws.next()).await;
            match hangup {
                Hangup::Abrupt => drop(ws),
                Hangup::Clean => {
                    let _ = ws.close(None).await;
                    // Wait (bounded) for the dialer's close reply.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
            }
        });
    });
    (url, thread)
}

#[test]
fn a_peer_that_crashes_mid_sync_is_reported_as_a_lost_connection() {
    let a = Org::init("Alpha Trust");
    let (url, peer) = fake_peer(Hangup::Abrupt);
    let out = a.run(&["sync", &url, "--timeout", SYNC_TIMEOUT]);
    peer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        !stderr.contains("bad magic byte") && !stderr.contains("not an Accord frame"),
        "a lost connection is not a protocol violation: {stderr}"
    );
}

#[test]
fn a_peer_that_closes_mid_sync_fails_the_sync_at_once() {
    let a = Org::init("Alpha Trust");
    let (url, peer) = fake_peer(Hangup::Clean);
    let started = Instant::now();
    let out = a.run(&["sync", &url, "--timeout", SYNC_TIMEOUT]);
    let took = started.elapsed();
    peer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(
        took < Duration::from_secs(10),
        "sync waited {took:?} (its whole --timeout) for a peer that had closed: {stderr}"
    );
}

/// Regression: a sync whose peer refused the TCP connection waited out its
/// whole `--timeout` before saying so (found when the relay was killed
/// while ten organisations synced, `tests/relay_faults.rs`).
#[test]
fn a_sync_with_an_unreachable_peer_fails_at_once() {
    let a = Org::init("Alpha Trust");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/sync");
    let started = Instant::now();
    let out = a.run(&["sync", &url, "--timeout", SYNC_TIMEOUT]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("could not reach"), "stderr: {stderr}");
    assert!(
        took < Duration::from_secs(10),
        "sync waited {took:?} (its whole --timeout) for a peer that refused the connection: {stderr}"
    );
}

/// `doc edit` while `accord serve` holds the replica: the editor runs here,
/// the node applies the change, and only the changed sentence is spliced.
#[test]
fn doc_edit_works_while_the_node_is_serving() {
    let org = Org::init("Women's Centre Wandsworth");
    org.ok(&["partnership", "new", "Sharing Our Strengths"]);
    org.new_doc("Sharing", "mou", "MOU");
    org.ok(&["doc", "set", "MOU", "purpose", "One. Two."]);
    let (_node, _url) = serve(&org, "serving node");
    let out = org.edit_with_sed("MOU", "s/One. Two./One. Two. Three./");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Applied 1 change"));
    assert_eq!(purpose(&org, "MOU"), "One. Two. Three.");
}
