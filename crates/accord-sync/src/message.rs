//! Decoding a peer's Automerge sync message, with the checks Automerge's
//! own decoder leaves out.
//!
//! Automerge 0.12 accepts a Bloom filter whose parameters it cannot use:
//! a filter with entries but zero bits makes the *next* message we generate
//! divide by zero (a panic outside any call that took the peer's bytes), and
//! a huge probe count makes it allocate gigabytes per hash (an abort, which
//! no `catch_unwind` can stop). Found by the `sync_message` fuzz target. So
//! every message from a peer is decoded here, and such a filter is a
//! protocol error for that connection before Automerge ever keeps it.

use automerge::sync::Message;

/// More probes than any honest filter uses (Automerge uses 7).
const MAX_PROBES: u32 = 64;
/// More `have` entries than any honest message carries (Automerge sends one).
const MAX_HAVES: usize = 16;

/// Decodes `bytes` as a sync message whose every part is safe to keep in a
/// sync state and to answer.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, String> {
    let message = Message::decode(bytes).map_err(|e| e.to_string())?;
    if message.have.len() > MAX_HAVES {
        return Err(format!(
            "{} Bloom filters in one message (at most {MAX_HAVES})",
            message.have.len()
        ));
    }
    for have in &message.have {
        check_bloom(&have.bloom.to_bytes())?;
    }
    Ok(message)
}

/// Checks an encoded Bloom filter: empty, or entries with at least one bit
/// each and a bounded number of probes.
fn check_bloom(encoded: &[u8]) -> Result<(), String> {
    if encoded.is_empty() {
        return Ok(());
    }
    let mut rest = encoded;
    let entries = uleb_u32(&mut rest)?;
    let bits_per_entry = uleb_u32(&mut rest)?;
    let probes = uleb_u32(&mut rest)?;
    if entries > 0 && (bits_per_entry == 0 || rest.is_empty()) {
        return Err("a Bloom filter with entries but no bits".to_owned());
    }
    if probes == 0 || probes > MAX_PROBES {
        return Err(format!(
            "a Bloom filter with {probes} probes (1 to {MAX_PROBES})"
        ));
    }
    Ok(())
}

/// Reads one unsigned LEB128 number that fits in 32 bits.
fn uleb_u32(input: &mut &[u8]) -> Result<u32, String> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(5) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return u32::try_from(value).map_err(|_| "a Bloom filter field overflows".to_owned());
        }
    }
    Err("a truncated Bloom filter".to_owned())
}

#[cfg(test)]
mod tests {
    use automerge::sync::{Have, Message, MessageVersion};
    use automerge::{ChangeHash, sync::BloomFilter};

    use super::*;

    fn message_with_filter(filter: &[u8]) -> Vec<u8> {
        let honest = Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: vec![Have {
                last_sync: Vec::new(),
                bloom: BloomFilter::from_hashes([ChangeHash([9; 32])].into_iter()),
            }],
            changes: Vec::<u8>::new().into(),
            flags: None,
            version: MessageVersion::V1,
        }
        .encode();
        // Swap the honest filter's bytes for `filter` (same length prefix rules).
        let good = BloomFilter::from_hashes([ChangeHash([9; 32])].into_iter()).to_bytes();
        let at = honest
            .windows(good.len())
            .position(|w| w == good.as_slice())
            .expect("the filter is in the message");
        let mut bytes = honest[..at - 1].to_vec();
        bytes.push(u8::try_from(filter.len()).expect("short filter"));
        bytes.extend_from_slice(filter);
        bytes.extend_from_slice(&honest[at + good.len()..]);
        bytes
    }

    #[test]
    fn an_honest_message_decodes() {
        let good = BloomFilter::from_hashes([ChangeHash([9; 32])].into_iter()).to_bytes();
        assert!(decode(&message_with_filter(&good)).is_ok());
    }

    #[test]
    fn a_filter_with_entries_but_no_bits_is_refused() {
        // One entry, zero bits per entry, seven probes: Automerge would
        // divide by zero answering it.
        let bytes = message_with_filter(&[1, 0, 7]);
        assert!(Message::decode(&bytes).is_ok(), "Automerge accepts it");
        let error = decode(&bytes).expect_err("refused");
        assert!(error.contains("no bits"), "{error}");
    }

    #[test]
    fn a_filter_with_too_many_probes_is_refused() {
        // One entry, ten bits, 2^32-1 probes: Automerge would try to
        // allocate 16 GiB per hash.
        let bytes = message_with_filter(&[1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0x03]);
        let error = decode(&bytes).expect_err("refused");
        assert!(error.contains("probes"), "{error}");
    }

    #[test]
    fn leb128_reads_and_bounds() {
        let mut input: &[u8] = &[0xe5, 0x8e, 0x26, 1];
        assert_eq!(uleb_u32(&mut input), Ok(624_485));
        assert_eq!(input, &[1]);
        assert!(uleb_u32(&mut &[0x80][..]).is_err());
        assert!(uleb_u32(&mut &[0xff, 0xff, 0xff, 0xff, 0x7f][..]).is_err());
    }
}
