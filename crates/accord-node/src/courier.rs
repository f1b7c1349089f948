//! Hands the driver's frames to the connection tasks, from the runtime.
//!
//! Why not from the driver thread itself: a frame put on an idle
//! connection's outbox wakes its task, and a wake from outside the runtime
//! is a system call that, on a small machine, often gives the woken worker
//! the driver's core. A relay forwarding one change to a hundred members
//! made a hundred such wakes before the last member's frame was queued
//! (`relay-fanout` in BENCHMARKS.md). The driver now sends each round's
//! frames to this one task as a parcel (one wake), and the task's own
//! wakes of the connections stay inside the runtime.
//!
//! Order is kept: a parcel is delivered whole and in order before the
//! next, and the driver sends a round's early frames before its commit and
//! the rest after, so "writes committed, then frames sent" still holds.

use std::collections::BTreeSet;
use std::sync::mpsc;

use accord_sync::ConnId;
use tokio::sync::mpsc as tokio_mpsc;

use crate::driver::{Command, Outbound};

/// Parcels waiting for the courier. Bounded: a driver that outruns it
/// waits for it rather than growing memory.
const PARCELS: usize = 1024;

/// One connection's outbox, as the driver holds it.
pub type Outbox = tokio_mpsc::Sender<Outbound>;

/// One thing for the courier to do.
#[derive(Debug)]
pub enum Delivery {
    Frame(ConnId, Outbox, Vec<u8>),
    Close(Outbox),
    /// The driver has forgotten a connection the courier found stalled:
    /// nothing more will come for it.
    Forget(ConnId),
}

/// The driver's end: collects a round's deliveries and ships them.
pub struct Courier {
    parcels: tokio_mpsc::Sender<Vec<Delivery>>,
    parcel: Vec<Delivery>,
}

impl Courier {
    /// Starts the courier task on `runtime`. A connection whose outbox is
    /// full (its peer does not read) is reported on `driver` as
    /// [`Command::Stalled`], once, and gets nothing more.
    pub fn spawn(runtime: &tokio::runtime::Handle, driver: mpsc::Sender<Command>) -> Courier {
        let (parcels, incoming) = tokio_mpsc::channel(PARCELS);
        runtime.spawn(deliver_all(incoming, driver));
        Courier {
            parcels,
            parcel: Vec::new(),
        }
    }

    pub fn add(&mut self, delivery: Delivery) {
        self.parcel.push(delivery);
    }

    /// Sends what was added since the last call, waiting if the courier is
    /// [`PARCELS`] behind. Call from the driver thread only (not from
    /// within the runtime).
    pub fn ship(&mut self) {
        if self.parcel.is_empty() {
            return;
        }
        // Fails only once the runtime is gone, when nobody reads anyway.
        let _ = self.parcels.blocking_send(std::mem::take(&mut self.parcel));
    }
}

async fn deliver_all(
    mut incoming: tokio_mpsc::Receiver<Vec<Delivery>>,
    driver: mpsc::Sender<Command>,
) {
    let mut stalled = BTreeSet::new();
    while let Some(parcel) = incoming.recv().await {
        for delivery in parcel {
            deliver(delivery, &mut stalled, &driver);
        }
    }
}

/// Does one delivery. `stalled`: connections found full and not yet
/// forgotten by the driver (a later frame must not land after a gap). The
/// driver counts frames as it queues them, and stalls as it hears of them.
fn deliver(delivery: Delivery, stalled: &mut BTreeSet<ConnId>, driver: &mpsc::Sender<Command>) {
    match delivery {
        Delivery::Frame(conn, _, _) if stalled.contains(&conn) => {}
        Delivery::Frame(conn, outbox, bytes) => {
            match outbox.try_send(Outbound::Frame(bytes)) {
                Ok(()) => {}
                // The connection task has ended; it reports `Disconnected`
                // itself, after any frames it already read.
                Err(tokio_mpsc::error::TrySendError::Closed(_)) => {}
                Err(tokio_mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(conn = conn.0, "peer is not reading; disconnecting it");
                    stalled.insert(conn);
                    let _ = driver.send(Command::Stalled { conn });
                }
            }
        }
        Delivery::Close(outbox) => {
            let _ = outbox.try_send(Outbound::Close);
        }
        Delivery::Forget(conn) => {
            stalled.remove(&conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a connection task would write: the frame, or "close".
    fn written(out: Outbound) -> Vec<u8> {
        match out {
            Outbound::Frame(bytes) => bytes,
            Outbound::Close => b"close".to_vec(),
        }
    }

    fn frames(rx: &mut tokio_mpsc::Receiver<Outbound>) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(written)
            .collect()
    }

    /// A peer that stops reading is reported once and sent nothing more,
    /// even once its outbox has room again (a frame after a gap would
    /// corrupt its conversation); other connections get theirs in order.
    #[test]
    fn a_full_outbox_is_reported_once_and_gets_nothing_after_the_gap() {
        let (driver, commands) = mpsc::channel();
        let (slow, mut slow_rx) = tokio_mpsc::channel(2);
        let (fine, mut fine_rx) = tokio_mpsc::channel(8);
        let (a, b) = (ConnId(1), ConnId(2));
        let mut stalled = BTreeSet::new();
        let parcel = vec![
            Delivery::Frame(a, slow.clone(), vec![1]),
            Delivery::Frame(b, fine.clone(), vec![10]),
            Delivery::Frame(a, slow.clone(), vec![2]),
            Delivery::Frame(a, slow.clone(), vec![3]),
            Delivery::Frame(b, fine.clone(), vec![11]),
        ];
        for d in parcel {
            deliver(d, &mut stalled, &driver);
        }
        assert_eq!(frames(&mut slow_rx), vec![vec![1], vec![2]]);
        // Room again, but the frame after the gap is dropped.
        deliver(
            Delivery::Frame(a, slow.clone(), vec![4]),
            &mut stalled,
            &driver,
        );
        assert!(frames(&mut slow_rx).is_empty(), "nothing after the gap");
        let reported: Vec<ConnId> = commands
            .try_iter()
            .map(|c| match c {
                Command::Stalled { conn } => conn,
                _ => panic!("only stalls are reported"),
            })
            .collect();
        assert_eq!(reported, vec![a], "reported once");
        assert_eq!(frames(&mut fine_rx), vec![vec![10], vec![11]]);
        deliver(Delivery::Forget(a), &mut stalled, &driver);
        assert!(stalled.is_empty(), "forgotten once the driver says so");
    }

    /// Parcels are delivered whole and in the order shipped, closes
    /// included, from a plain thread as the driver ships them.
    #[test]
    fn parcels_arrive_in_the_order_shipped() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (driver, _commands) = mpsc::channel();
        let mut courier = Courier::spawn(runtime.handle(), driver);
        let (outbox, mut rx) = tokio_mpsc::channel(64);
        let conn = ConnId(7);
        for round in 0..10u8 {
            courier.add(Delivery::Frame(conn, outbox.clone(), vec![round, 0]));
            courier.add(Delivery::Frame(conn, outbox.clone(), vec![round, 1]));
            courier.ship();
        }
        courier.add(Delivery::Close(outbox.clone()));
        courier.ship();
        drop(outbox);
        let got = runtime.block_on(async {
            let mut got = Vec::new();
            while let Some(out) = rx.recv().await {
                let closed = matches!(out, Outbound::Close);
                got.push(written(out));
                if closed {
                    break;
                }
            }
            got
        });
        let mut expected: Vec<Vec<u8>> = (0..10u8).flat_map(|r| [vec![r, 0], vec![r, 1]]).collect();
        expected.push(b"close".to_vec());
        assert_eq!(got, expected);
    }
}
