//! A seeded mutation smoke that runs on stable without libFuzzer: each
//! iteration takes a corpus input and applies a few of the edits libFuzzer
//! makes most often (bit flips, byte sets, inserts, deletes, truncation,
//! splicing with another input). Not a substitute for coverage-guided
//! fuzzing, but it exercises every target on every CI run.

/// xorshift64*: small, seedable, good enough to pick mutations.
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

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// A mutated copy of `corpus[pick]`, with 1 to 4 edits.
pub fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut input = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        edit(rng, &mut input, corpus);
    }
    input
}

fn edit(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(7) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
        }
        2 => {
            let at = rng.below(len + 1);
            input.insert(at, rng.next_u64() as u8);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(16)).min(len);
            input.drain(at..end);
        }
        4 => input.truncate(rng.below(len + 1)),
        5 => {
            let other = &corpus[rng.below(corpus.len())];
            let from = rng.below(other.len() + 1);
            let at = rng.below(len + 1);
            let tail = input.split_off(at);
            input.extend_from_slice(&other[from..]);
            input.truncate(at + 64.min(other.len() - from));
            input.extend(tail);
        }
        _ if len > 0 => {
            let at = rng.below(len);
            input[at] = input[at].wrapping_add(rng.below(35) as u8).wrapping_sub(17);
        }
        _ => input.push(rng.next_u64() as u8),
    }
}
