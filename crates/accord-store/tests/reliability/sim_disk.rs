//! `SimDisk`: an in-memory redb backend that knows which bytes are durable.
//!
//! Every write lands in `live` (what reads see) and is remembered as
//! pending until the next `sync_data`, which makes everything pending
//! durable. Power loss at sync number N: that sync and everything after it
//! fails, as if the machine stopped there, and [`SimDisk::crash_image`]
//! builds what the platter could hold afterwards: the durable bytes plus
//! any subset of the pending writes, some of them torn at sector
//! boundaries. An injected fault fails one chosen write or sync and lets
//! later operations through, as a transient EIO would.

use std::sync::{Arc, Mutex, MutexGuard};

/// Sector size for torn writes: a write may reach the disk in part, one
/// sector at a time.
const SECTOR: usize = 512;

/// The error text of every injected failure, so tests can recognise it.
pub const INJECTED: &str = "injected I/O error";

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

/// Which operation a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    Write,
    Sync,
}

#[derive(Debug, Default)]
struct State {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
    syncs: u64,
    writes: u64,
    /// Power is lost at this sync (1-based): it and everything after fail.
    power_loss_at: Option<u64>,
    powered_off: bool,
    /// One operation (1-based count of its kind) fails; others succeed.
    fault: Option<(FaultOp, u64)>,
    faulted: bool,
}

/// A simulated disk; clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<State>>);

impl SimDisk {
    /// A disk whose durable content is `image` (e.g. a crash image).
    pub fn from_image(image: Vec<u8>) -> SimDisk {
        let state = State {
            live: image.clone(),
            durable: image,
            ..State::default()
        };
        SimDisk(Arc::new(Mutex::new(state)))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loses power at sync number `n` (1-based).
    pub fn lose_power_at_sync(&self, n: u64) {
        self.state().power_loss_at = Some(n);
    }

    /// Fails the `n`th (1-based) operation of kind `op`, once.
    pub fn fail(&self, op: FaultOp, n: u64) {
        self.state().fault = Some((op, n));
    }

    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    pub fn powered_off(&self) -> bool {
        self.state().powered_off
    }

    pub fn faulted(&self) -> bool {
        self.state().faulted
    }

    /// What reads see now: the image left when the process stops but the
    /// machine keeps running (the page cache reaches the disk).
    pub fn live_image(&self) -> Vec<u8> {
        self.state().live.clone()
    }

    /// What the disk may hold after the power loss: the durable bytes, then
    /// each pending operation in order kept or dropped by `keep`, a kept
    /// write torn to its first `tear` sectors when `tear` says so.
    pub fn crash_image(
        &self,
        mut keep: impl FnMut() -> bool,
        mut tear: impl FnMut(usize) -> Option<usize>,
    ) -> Vec<u8> {
        let state = self.state();
        let mut image = state.durable.clone();
        for op in &state.pending {
            if !keep() {
                continue;
            }
            match op {
                Pending::SetLen(len) => image.resize(*len, 0),
                Pending::Write { offset, data } => {
                    let sectors = data.len().div_ceil(SECTOR);
                    let kept = tear(sectors).map_or(data.len(), |s| (s * SECTOR).min(data.len()));
                    let end = offset + kept;
                    if image.len() < end {
                        image.resize(end, 0);
                    }
                    image[*offset..end].copy_from_slice(&data[..kept]);
                }
            }
        }
        image
    }
}

fn injected() -> std::io::Error {
    std::io::Error::other(INJECTED)
}

impl redb::StorageBackend for SimDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.state().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let state = self.state();
        let start = offset as usize;
        let end = start + out.len();
        if end > state.live.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        out.copy_from_slice(&state.live[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut state = self.state();
        if state.powered_off {
            return Err(injected());
        }
        state.live.resize(len as usize, 0);
        state.pending.push(Pending::SetLen(len as usize));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut state = self.state();
        if state.powered_off {
            return Err(injected());
        }
        state.syncs += 1;
        if state.power_loss_at == Some(state.syncs) {
            state.powered_off = true;
            return Err(injected());
        }
        if state.fault == Some((FaultOp::Sync, state.syncs)) {
            // Nothing becomes durable; the test then checks both what the
            // page cache holds and what a power loss right now could leave.
            state.faulted = true;
            return Err(injected());
        }
        state.durable = state.live.clone();
        state.pending.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut state = self.state();
        if state.powered_off {
            return Err(injected());
        }
        state.writes += 1;
        if state.fault == Some((FaultOp::Write, state.writes)) {
            state.faulted = true;
            return Err(injected());
        }
        let start = offset as usize;
        let end = start + data.len();
        if end > state.live.len() {
            state.live.resize(end, 0);
        }
        state.live[start..end].copy_from_slice(data);
        state.pending.push(Pending::Write {
            offset: start,
            data: data.to_vec(),
        });
        Ok(())
    }
}
