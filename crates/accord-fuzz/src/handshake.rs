//! Target `handshake`: a sequence of peer messages on a fresh connection,
//! from the first `Hello` on, with time passing between them.
//!
//! Input layout: one setup byte (bit 0: A dials, bit 1: A pins B's key,
//! bit 2: coalesce), then records of `[pause: u8][len: u16 LE][message]`.
//! A pause of 255 jumps past the handshake deadline; any other pause is
//! that many tenths of a second.

use crate::harness::{Harness, Setup};

/// Most records read from one input, so one input stays one short run.
const MAX_RECORDS: usize = 64;
/// The pause byte that jumps past the handshake deadline.
const PAST_DEADLINE: u8 = 255;

/// Feeds every record to engine A; the harness checks the invariants.
pub fn handshake(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut harness = Harness::new(setup(flags));
    for _ in 0..MAX_RECORDS {
        let Some((pause, message, tail)) = next_record(rest) else {
            break;
        };
        rest = tail;
        if pause == PAST_DEADLINE {
            harness.advance(11_000);
        } else if pause > 0 {
            harness.advance(u64::from(pause) * 100);
        }
        harness.receive(message.to_vec());
        harness.flush();
    }
    harness.check_store();
    harness.disconnect();
}

/// The setup encoded in the first byte.
pub fn setup(flags: u8) -> Setup {
    Setup {
        a_dials: flags & 1 != 0,
        expect_b: flags & 2 != 0,
        coalesce: flags & 4 != 0,
    }
}

fn next_record(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&pause, rest) = data.split_first()?;
    let len_bytes: [u8; 2] = rest.get(..2)?.try_into().ok()?;
    let len = usize::from(u16::from_le_bytes(len_bytes)).min(rest.len() - 2);
    let (message, tail) = rest[2..].split_at(len);
    Some((pause, message, tail))
}

/// Encodes messages in this target's input layout (for seeds).
pub fn encode(flags: u8, records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![flags];
    for (pause, message) in records {
        let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
        out.push(*pause);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&message[..usize::from(len)]);
    }
    out
}
