//! Small runs of the relay load generator and of the fan-out benchmark
//! against an in-process relay, so CI exercises the real relay over
//! loopback websockets, its durability promise (every acknowledged edit is
//! in the relay's replica) and the benchmarks' own bookkeeping.

use std::time::Duration;

use crate::relay_fanout::{FanoutConfig, Ours, RelayPlace, ours};
use crate::relay_load::{LoadConfig, load};
use crate::servers::{RelayHost, create_relay_replica, start_relay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_load_smoke_acknowledges_delivers_and_keeps_every_edit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    create_relay_replica(&data).unwrap();
    let relay = RelayHost::InProcess(start_relay(&data, 128).await.unwrap());
    let config = LoadConfig {
        connections: 50,
        docs: 5,
        rate: 20.0,
        duration: Duration::from_secs(60),
        max_edits: Some(4),
        settle: Duration::from_secs(30),
    };
    let run = load(relay, &data, config);
    let report = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the smoke run finished within 120 s")
        .unwrap();
    let (f, d) = (&report.figures, &report.durability);
    eprintln!("{f:?}\n{d:?}");
    assert_eq!(f.committed, 50 * 4);
    assert_eq!(f.acked, f.committed);
    // Every writer is honest: a refusal is a bug (RELIABILITY.md, "Relay
    // under load", names the two found and fixed), never load noise.
    assert!(f.refusals.is_empty(), "{:?}", f.refusals);
    // Every edit reaches the other nine members of its partnership.
    assert!(report.complete, "{report:?}");
    assert_eq!(f.received, f.committed * 9);
    assert_eq!((d.acknowledged, d.lost, d.unacknowledged), (200, 0, 0));
    assert_eq!(d.stored, 200);
}

/// The fan-out benchmark's side through the relay, in process, bounded in time.
async fn fanout_smoke(subscribers: usize, config: FanoutConfig) -> Ours {
    let run = ours(subscribers, config, RelayPlace::InProcess);
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the fan-out smoke finished within 120 s")
        .unwrap()
}

/// The fan-out benchmark's path, small, against an in-process relay: every
/// edit reaches every subscriber, and the subscribers hold their engine
/// work while an edit is fanned out (see `relay_client::Fanout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_fanout_smoke_delivers_every_edit_with_engines_held_for_the_fanout() {
    let config = FanoutConfig {
        edits: 4,
        rate: 5.0,
        warmup: 1,
        subscriber_window_ms: 50,
        hold_for_fanout: true,
    };
    let ours = fanout_smoke(3, config).await;
    let f = &ours.figures;
    eprintln!("{f:?}");
    assert!(
        ours.complete,
        "not every edit was acknowledged and received"
    );
    assert!(f.refusals.is_empty(), "{:?}", f.refusals);
    assert_eq!((f.committed, f.acked), (4, 4));
    // The warm-up edit is reported apart: three edits, three subscribers.
    assert_eq!(f.received, 3 * 3);
    // The first subscriber to read each held edit waits for the other two.
    assert!(ours.holds >= 3, "subscribers held {} times", ours.holds);
}

/// The writer's timed edits wait until every subscriber has the warm-up
/// edits (`ClientMode::warmup`). Edits 20 ms apart and subscribers that
/// hold received changes for 100 ms: without the wait, the first timed edit
/// would leave before any subscriber had applied the second warm-up edit
/// (the first comes whole with the document, which is not held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_fanout_smoke_times_no_edit_before_every_subscriber_is_warm() {
    let config = FanoutConfig {
        edits: 4,
        rate: 50.0,
        warmup: 2,
        subscriber_window_ms: 100,
        hold_for_fanout: false,
    };
    let ours = fanout_smoke(2, config).await;
    assert!(
        ours.complete,
        "not every edit was acknowledged and received"
    );
    assert!(
        ours.warm_before_timed,
        "a timed edit left before the warm-up reached every subscriber"
    );
    assert_eq!(ours.figures.received, 2 * 2);
}
