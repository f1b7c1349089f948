//! The relay killed mid-sync, again and again, while ten organisations push
//! a bulk of signed changes to it at once.
//!
//! Each of ten writers runs its own partnership through one relay (so each
//! is a creator the relay accepts) and admits a shared observer, which never
//! writes and only ever fetches from the relay: the observer is how we see
//! what the relay itself kept. The writers cannot be the check, because a
//! writer resends whatever the relay lost and would heal a loss silently.
//!
//! A cycle: every writer has new changes; all ten `accord sync` start at
//! once; the relay is SIGKILLed once a seeded number of their connections
//! has reached it; every sync exits (some fail, none may panic); the relay
//! restarts on the same folder and port. A sync that succeeded was
//! acknowledged: it ends when the relay reports our heads, and the relay
//! sends nothing before its writes are committed. So the observer, fetching
//! from the restarted relay alone, must then hold every change of every
//! acknowledged writer. Then everyone syncs until the observer holds exactly
//! each writer's document, timed from the restart. After the last cycle a
//! second, fresh member (the auditor) fetches everything from the relay
//! alone too, so a change lost from an earlier cycle's data cannot hide
//! behind the observer's own copy.
//!
//! `ACCORD_RELAY_KILL_CYCLES` (default 3) sets the cycles and
//! `ACCORD_RELAY_KILL_SEED` replays a run's kill points and texts.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::durability::Rng;
use crate::support::{Org, assert_no_panic, env_number, seed_from_env};
use crate::sync::{DEADLINE, Proc, Relay, SYNC_TIMEOUT, eventually, heads, sync};

const WRITERS: usize = 10;
/// Objectives (one signed change each) every writer adds before the first
/// cycle, beside one long text; and before every later cycle.
const FIRST_BULK: u32 = 40;
const LATER_BULK: u32 = 10;
const FIRST_TEXT: usize = 30_000;
const LATER_TEXT: usize = 4_000;

/// One organisation that writes and syncs through the relay.
struct Writer {
    name: String,
    org: Org,
    /// Its partnership's agreement.
    doc: String,
    /// The invite codes for the observer and the auditor.
    invites: [String; 2],
    /// Every change the relay has acknowledged to it.
    acknowledged: BTreeSet<String>,
}

/// A wall-clock stopwatch that can leave out the test's own checks.
struct Stopwatch {
    started: Instant,
    paused: Duration,
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch {
            started: Instant::now(),
            paused: Duration::ZERO,
        }
    }

    /// Runs `f` without counting its time.
    fn exclude<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let at = Instant::now();
        let value = f();
        self.paused += at.elapsed();
        value
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed() - self.paused
    }
}

/// Seeded filler text of about `len` bytes.
fn prose(rng: &mut Rng, len: usize) -> String {
    let mut text = String::with_capacity(len + 24);
    while text.len() < len {
        text.push_str(&format!("{:x} ", rng.below(u64::MAX)));
    }
    text
}

/// Runs `f` on every item on its own thread; results in item order.
fn in_parallel<I: Sync, T: Send>(items: &[I], f: impl Fn(usize, &I) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let f = &f;
        let threads: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, item)| scope.spawn(move || f(i, item)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The hashes of every change `org` holds of `doc`, or `None` if it holds
/// no such document.
fn change_hashes(org: &Org, doc: &str) -> Option<BTreeSet<String>> {
    let out = org.run(&["history", doc, "--json"]);
    if !out.status.success() {
        return None;
    }
    let changes: Value = serde_json::from_slice(&out.stdout).expect("history --json is JSON");
    Some(
        changes
            .as_array()
            .expect("history is an array")
            .iter()
            .map(|c| c["hash"].as_str().expect("hash").to_owned())
            .collect(),
    )
}

/// Every acknowledged change `reader` (which fetched from the relay alone)
/// lacks, as lines naming the writer. (One replica serves one process at a
/// time, so the reader is read document by document.)
fn missing_from(reader: &Org, writers: &[Writer]) -> Vec<String> {
    writers
        .iter()
        .filter_map(|w| {
            let held = change_hashes(reader, &w.doc).unwrap_or_default();
            let lost: Vec<&String> = w.acknowledged.difference(&held).collect();
            (!lost.is_empty()).then(|| {
                format!(
                    "{}: {} of {} acknowledged changes missing, e.g. {:?}",
                    w.name,
                    lost.len(),
                    w.acknowledged.len(),
                    &lost[..lost.len().min(3)]
                )
            })
        })
        .collect()
}

/// `accord sync` that must succeed.
fn sync_must_succeed(org: &Org, who: &str) {
    let run = sync(org, &[]);
    assert!(
        run.ok,
        "{who}: accord sync failed (exit {:?}): {}",
        run.code, run.stderr
    );
}

/// Why `reader`'s copies differ from the writers' own documents, if they do.
fn differences(reader: &Org, writers: &[Writer]) -> Option<String> {
    let originals = in_parallel(writers, |_, w| w.org.doc(&w.doc));
    writers.iter().zip(originals).find_map(|(w, theirs)| {
        let ours = reader.doc(&w.doc);
        if theirs["heads"] != ours["heads"] {
            Some(format!(
                "{}: heads {} but the observer has {}",
                w.name, theirs["heads"], ours["heads"]
            ))
        } else if theirs["fields"] != ours["fields"] {
            Some(format!("{}: same heads, different content", w.name))
        } else {
            None
        }
    })
}

/// Creates the ten writers (in parallel: every command here is local), each
/// with a partnership, an agreement, the relay as peer and the observer and
/// auditor as informed members with an invite each.
fn writers(relay: &Relay, observer: &Org, auditor: &Org) -> Vec<Writer> {
    let (observer_key, auditor_key) = (observer.key(), auditor.key());
    let (relay_url, relay_key) = (&relay.url, &relay.key);
    let numbers: Vec<usize> = (0..WRITERS).collect();
    in_parallel(&numbers, |_, &i| {
        let name = format!("Writer {i:02}");
        let partnership = format!("Partnership {i:02}");
        let org = Org::init(&name);
        org.ok(&["partnership", "new", &partnership]);
        let doc = org.new_doc(&partnership, "mou", "MOU");
        for (member, key) in [("Observer", &observer_key), ("Auditor", &auditor_key)] {
            org.ok(&[
                "member",
                "add",
                &partnership,
                "--name",
                member,
                "--key",
                key,
                "--role",
                "informed",
            ]);
        }
        org.ok(&["peer", "add", relay_url, "--key", relay_key]);
        let invites = [
            org.invite(&partnership, "Observer"),
            org.invite(&partnership, "Auditor"),
        ];
        // The relay learns the partnership from its creator.
        sync_must_succeed(&org, &name);
        Writer {
            name,
            org,
            doc,
            invites,
            acknowledged: BTreeSet::new(),
        }
    })
}

/// Gives every writer `count` more signed changes (one objective each) and
/// one long text to push.
fn add_bulk(writers: &[Writer], cycle: u32, count: u32, texts: &[String]) {
    in_parallel(writers, |i, w| {
        let prefix = format!("c{cycle}");
        let count = count.to_string();
        let added = w.org.ok(&[
            "debug", "ack-loop", &w.doc, "--prefix", &prefix, "--count", &count,
        ]);
        assert_eq!(added.lines().count().to_string(), count, "{}", w.name);
        let item = format!("text={}", texts[i]);
        w.org.ok(&["doc", "add", &w.doc, "objectives", &item]);
    });
}

/// When to kill the relay during a cycle's syncs.
#[derive(Clone, Copy)]
struct KillPoint {
    /// Once this many of the writers' connections have reached the relay...
    connections: u64,
    /// ...and this many syncs have exited.
    exits: usize,
}

impl KillPoint {
    fn draw(rng: &mut Rng) -> Self {
        KillPoint {
            connections: 1 + rng.below(WRITERS as u64),
            // At most half: later, the rest have usually finished too.
            exits: rng.below(WRITERS as u64 / 2) as usize,
        }
    }
}

impl std::fmt::Display for KillPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "after {} connections and {} exits",
            self.connections, self.exits
        )
    }
}

/// Starts every writer's sync at once, kills the relay at `kill` (or once
/// all have exited), and returns which syncs succeeded.
fn sync_all_and_kill(relay: &mut Relay, writers: &[Writer], kill: KillPoint) -> Vec<bool> {
    let seen_before = relay.metric("accord_connections_total");
    let mut syncs: Vec<Proc> = writers
        .iter()
        .map(|w| {
            let sync = w
                .org
                .command(&["sync", "--json", "--timeout", SYNC_TIMEOUT]);
            Proc::spawn(&format!("{}'s accord sync", w.name), sync)
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let seen = relay.metric("accord_connections_total") - seen_before;
        let exited = syncs
            .iter_mut()
            .map(Proc::has_exited)
            .filter(|e| *e)
            .count();
        if (seen >= kill.connections && exited >= kill.exits) || exited == syncs.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} connections and {exited} exits within {DEADLINE:?}, waiting to kill the relay {kill}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    relay.proc.kill9();
    syncs
        .iter_mut()
        .map(|sync| {
            let status = sync.wait_exit(DEADLINE);
            assert_no_panic(&sync.stderr());
            status.success()
        })
        .collect()
}

/// Syncs every writer (retrying failures), then the observer, until the
/// observer holds exactly every writer's document.
fn converge(writers: &[Writer], observer: &Org) {
    eventually("the observer holds exactly every writer's document", || {
        in_parallel(writers, |_, w| {
            eventually(
                &format!("{} syncs with the restarted relay", w.name),
                || {
                    let run = sync(&w.org, &[]);
                    if run.ok { Ok(()) } else { Err(run.stderr) }
                },
            )
        });
        sync_must_succeed(observer, "observer");
        differences(observer, writers).map_or(Ok(()), Err)
    });
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[test]
fn relay_killed_mid_sync_repeatedly_loses_nothing_it_acknowledged() {
    let started = Instant::now();
    let cycles = env_number("ACCORD_RELAY_KILL_CYCLES").unwrap_or(3) as u32;
    assert!(cycles > 0, "ACCORD_RELAY_KILL_CYCLES must be at least 1");
    let seed = seed_from_env("ACCORD_RELAY_KILL_SEED");
    // A bound on the whole run, so a slow relay fails clearly instead of
    // running on.
    let budget = Duration::from_secs(90 + 40 * u64::from(cycles));
    eprintln!("relay killed mid-sync: {cycles} cycles, ACCORD_RELAY_KILL_SEED={seed}");
    let mut rng = Rng(seed);

    let relay_home = Org::empty();
    let mut relay = Relay::start(&relay_home, 0);
    let port = relay.port;
    let observer = Org::init("Observer");
    let auditor = Org::init("Auditor");
    let mut writers = writers(&relay, &observer, &auditor);
    for w in &writers {
        observer.ok(&["join", &w.invites[0]]);
    }
    sync_must_succeed(&observer, "observer");
    eprintln!(
        "set up {WRITERS} writers and the observer in {}",
        seconds(started.elapsed())
    );

    let mut convergence = Vec::new();
    let (mut acknowledged_syncs, mut interrupted_syncs) = (0, 0);
    for cycle in 0..cycles {
        assert!(
            started.elapsed() < budget,
            "cycle {cycle} of {cycles} (seed {seed}): over the budget of {budget:?}"
        );
        let (count, len) = if cycle == 0 {
            (FIRST_BULK, FIRST_TEXT)
        } else {
            (LATER_BULK, LATER_TEXT)
        };
        let texts: Vec<String> = (0..WRITERS).map(|_| prose(&mut rng, len)).collect();
        add_bulk(&writers, cycle, count, &texts);

        let kill = KillPoint::draw(&mut rng);
        let succeeded = sync_all_and_kill(&mut relay, &writers, kill);
        // No sync can succeed after the kill (the relay stays down until all
        // have exited), so every success was acknowledged by the killed relay.
        for (w, ok) in writers.iter_mut().zip(&succeeded) {
            if *ok {
                w.acknowledged = change_hashes(&w.org, &w.doc).expect("the writer's own document");
            }
        }
        let acknowledged = succeeded.iter().filter(|ok| **ok).count();
        acknowledged_syncs += acknowledged;
        interrupted_syncs += WRITERS - acknowledged;

        let mut clock = Stopwatch::start();
        relay = Relay::restart(&relay_home, port);
        sync_must_succeed(&observer, "observer");
        let missing = clock.exclude(|| missing_from(&observer, &writers));
        assert!(
            missing.is_empty(),
            "cycle {cycle} (seed {seed}): the restarted relay lost acknowledged changes:\n{}",
            missing.join("\n")
        );
        if cycle + 1 == cycles {
            // Before the writers resend anything: a fresh member sees only
            // what the relay kept through every kill.
            let missing = clock.exclude(|| {
                for w in &writers {
                    auditor.ok(&["join", &w.invites[1]]);
                }
                sync_must_succeed(&auditor, "auditor");
                missing_from(&auditor, &writers)
            });
            assert!(
                missing.is_empty(),
                "after {cycles} kills (seed {seed}), a fresh member misses acknowledged changes:\n{}",
                missing.join("\n")
            );
        }
        converge(&writers, &observer);
        let took = clock.elapsed();
        convergence.push(took);
        eprintln!(
            "cycle {cycle}: killed {kill}; {acknowledged} of {WRITERS} syncs acknowledged, 0 lost; converged {} after the restart",
            seconds(took)
        );
    }

    assert!(
        interrupted_syncs > 0,
        "no kill landed during a sync (seed {seed}): the test checked nothing"
    );
    for w in &writers {
        assert_eq!(
            heads(&observer, &w.doc),
            heads(&w.org, &w.doc),
            "{}",
            w.name
        );
    }
    let changes: usize = writers.iter().map(|w| w.acknowledged.len()).sum();
    convergence.sort();
    eprintln!(
        "relay killed mid-sync: {cycles} cycles (seed {seed}), {acknowledged_syncs} syncs acknowledged and {interrupted_syncs} interrupted, {changes} changes acknowledged, 0 lost; convergence after restart min {} / median {} / max {}; whole test {}",
        seconds(convergence[0]),
        seconds(convergence[convergence.len() / 2]),
        seconds(convergence[convergence.len() - 1]),
        seconds(started.elapsed())
    );
}
