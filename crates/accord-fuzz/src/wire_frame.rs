//! Target `wire_frame`: one websocket message decoded as a frame.

use accord_sync::wire::{Frame, MAX_FRAME, Reassembly};

/// Decodes `data` as a frame. A frame that decodes must encode back to a
/// frame that decodes to itself (so what A relays is what it read), fit in
/// [`MAX_FRAME`], and, if it is a message part, reassemble within its bounds.
pub fn wire_frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let encoded = frame.encode();
    assert!(
        encoded.len() <= MAX_FRAME,
        "a decoded frame re-encodes too large"
    );
    assert_eq!(
        Frame::decode(&encoded).as_ref(),
        Ok(&frame),
        "a frame does not survive a round trip"
    );
    if let Frame::SyncPart {
        doc,
        total,
        offset,
        bytes,
    } = frame
    {
        let len = bytes.len();
        let mut slot = None;
        match Reassembly::push(&mut slot, doc, total, offset, bytes) {
            Ok(Some((_, message))) => assert_eq!(message.len(), total as usize),
            Ok(None) => assert!(len < total as usize, "an incomplete part claims completion"),
            Err(_) => assert!(slot.is_none(), "a refused part left state behind"),
        }
    }
}
