//! Seeded workloads through the real `Replica`, `WriteBatch` and
//! `CommitQueue`, with a model of what every acknowledged prefix must hold.
//!
//! The oracle: after any crash or fault, the replica reads back exactly the
//! model's state after some operation `j` with `acked <= j <= attempted`:
//! everything acknowledged is there (durability), nothing is half there
//! (atomicity), and nothing is there that was never written (no silent
//! damage).

use std::collections::BTreeMap;
use std::sync::Arc;

use accord_store::{DocInfo, DocKey, Replica, StoreError, WriteBatch};

/// Setting keys the workload writes (so a reader knows which to read).
const SETTING_KEYS: [&str; 3] = ["peers", "joined", "theme"];

/// xorshift64*, seeded per workload and printed on failure.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    fn bytes(&mut self, min: u64, max: u64) -> Vec<u8> {
        let len = min + self.below(max - min + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A document as a reader sees it: title, snapshot, log entries, heads.
pub type DocView = (String, Vec<u8>, Vec<Vec<u8>>, Vec<[u8; 32]>);

/// What a replica holds, as a reader sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub docs: BTreeMap<DocKey, DocView>,
    pub settings: BTreeMap<String, Vec<u8>>,
}

/// One operation: a batch and the model's transition.
#[derive(Clone, Debug)]
pub enum Op {
    NewDoc {
        id: DocKey,
        snapshot: Vec<u8>,
    },
    Append {
        id: DocKey,
        bytes: Vec<u8>,
        head: [u8; 32],
    },
    Compact {
        id: DocKey,
        snapshot: Vec<u8>,
    },
    Setting {
        key: &'static str,
        value: Vec<u8>,
    },
}

impl Op {
    fn batch(&self, next_seq: u64) -> WriteBatch {
        let mut batch = WriteBatch::new();
        match self {
            Op::NewDoc { id, snapshot } => {
                batch.put_document(*id, info(*id), snapshot.clone(), 1);
                batch.set_heads(*id, vec![[id[0]; 32]]);
            }
            Op::Append { id, bytes, head } => {
                batch.append_changes(*id, bytes.clone(), 1);
                batch.set_heads(*id, vec![*head]);
            }
            Op::Compact { id, snapshot } => batch.compact(*id, snapshot.clone(), 1, next_seq),
            Op::Setting { key, value } => batch.put_setting(key, value.clone()),
        }
        batch
    }

    fn apply(&self, model: &mut Observed) {
        match self {
            Op::NewDoc { id, snapshot } => {
                let entry = (
                    info(*id).title,
                    snapshot.clone(),
                    Vec::new(),
                    vec![[id[0]; 32]],
                );
                model.docs.insert(*id, entry);
            }
            Op::Append { id, bytes, head } => {
                let doc = model
                    .docs
                    .get_mut(id)
                    .expect("appends name existing documents");
                doc.2.push(bytes.clone());
                doc.3 = vec![*head];
            }
            Op::Compact { id, snapshot } => {
                let doc = model
                    .docs
                    .get_mut(id)
                    .expect("compactions name existing documents");
                doc.1 = snapshot.clone();
                doc.2.clear();
            }
            Op::Setting { key, value } => {
                model.settings.insert((*key).to_owned(), value.clone());
            }
        }
    }

    fn is_compact(&self) -> bool {
        matches!(self, Op::Compact { .. })
    }
}

fn info(id: DocKey) -> DocInfo {
    DocInfo {
        partnership: [1; 16],
        kind: "mou".into(),
        title: format!("doc {}", id[0]),
    }
}

/// `count` seeded operations; snapshots up to 40 KB so some span several chunks.
pub fn generate(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let mut docs: Vec<DocKey> = Vec::new();
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let pick = rng.below(10);
        let op = if docs.is_empty() || pick == 0 {
            let id = [docs.len() as u8 + 1; 16];
            docs.push(id);
            Op::NewDoc {
                id,
                snapshot: rng.bytes(1, 40_000),
            }
        } else if pick <= 6 {
            let id = docs[rng.below(docs.len() as u64) as usize];
            let head = rng.bytes(32, 32).try_into().expect("32 bytes");
            Op::Append {
                id,
                bytes: rng.bytes(1, 3_000),
                head,
            }
        } else if pick == 7 {
            let id = docs[rng.below(docs.len() as u64) as usize];
            Op::Compact {
                id,
                snapshot: rng.bytes(1, 40_000),
            }
        } else {
            Op::Setting {
                key: SETTING_KEYS[rng.below(3) as usize],
                value: rng.bytes(0, 200),
            }
        };
        ops.push(op);
    }
    ops
}

/// The model's state before any operation and after each one.
pub fn model_states(ops: &[Op]) -> Vec<Observed> {
    let mut model = Observed::default();
    let mut states = vec![model.clone()];
    for op in ops {
        op.apply(&mut model);
        states.push(model.clone());
    }
    states
}

/// How a run went: `acked` operations were acknowledged (always a prefix),
/// `attempted` were handed to the store, and any acknowledgement given
/// after the first failure is counted in `acked_after_failure`.
#[derive(Debug, Default)]
pub struct Outcome {
    pub acked: usize,
    pub attempted: usize,
    pub first_error: Option<StoreError>,
    pub acked_after_failure: usize,
}

/// Runs `ops` against `replica`: groups of up to six through a
/// `CommitQueue`, single operations and every compaction through
/// `Replica::commit`. After the first failure it keeps going for
/// `after_failure` more operations (to catch a late acknowledgement).
pub fn run(replica: &Arc<Replica>, ops: &[Op], seed: u64, after_failure: usize) -> Outcome {
    let mut rng = Rng::new(seed ^ 0x00C0_FFEE);
    let queue = replica.commit_queue();
    let mut outcome = Outcome::default();
    let mut next = 0;
    while next < ops.len() {
        if outcome.first_error.is_some() && outcome.attempted >= outcome.acked + after_failure {
            break;
        }
        let group = 1 + rng.below(6) as usize;
        let end = (next + group).min(ops.len());
        let direct = rng.below(2) == 0 || ops[next..end].iter().any(Op::is_compact);
        let results = if direct {
            let result = commit_direct(replica, &ops[next]);
            next += 1;
            vec![result]
        } else {
            let tickets: Vec<_> = ops[next..end]
                .iter()
                .map(|op| queue.submit(op.batch(0)))
                .collect();
            next = end;
            tickets.into_iter().map(|t| queue.wait(t)).collect()
        };
        for result in results {
            outcome.attempted += 1;
            match result {
                Ok(()) if outcome.first_error.is_none() => outcome.acked += 1,
                Ok(()) => outcome.acked_after_failure += 1,
                Err(err) if outcome.first_error.is_none() => outcome.first_error = Some(err),
                Err(_) => {}
            }
        }
    }
    let _ = queue.close();
    outcome
}

fn commit_direct(replica: &Replica, op: &Op) -> Result<(), StoreError> {
    let next_seq = match op {
        Op::Compact { id, .. } => replica
            .load_document(id)?
            .map_or(0, |stored| stored.next_seq),
        _ => 0,
    };
    replica.commit(op.batch(next_seq))
}

/// Reads everything the workload could have written.
pub fn observe(replica: &Replica) -> Result<Observed, StoreError> {
    let mut observed = Observed::default();
    for (id, _) in replica.documents()? {
        let stored = replica
            .load_document(&id)?
            .expect("a listed document loads");
        let entry = (
            stored.info.title,
            stored.snapshot,
            stored.changes,
            stored.heads,
        );
        observed.docs.insert(id, entry);
    }
    for key in SETTING_KEYS {
        if let Some(value) = replica.get_setting(key)? {
            observed.settings.insert(key.to_owned(), value);
        }
    }
    Ok(observed)
}

/// The operation index `j` in `acked..=attempted` whose model state is `observed`.
pub fn matching_state(
    states: &[Observed],
    outcome: &Outcome,
    observed: &Observed,
) -> Option<usize> {
    let last = outcome.attempted.min(states.len() - 1);
    (outcome.acked..=last).find(|&j| states[j] == *observed)
}
