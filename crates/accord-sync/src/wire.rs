//! The wire format: the only module that turns frames into bytes and back.
//!
//! Every frame is `b'A'`, a protocol version byte, then the frame body in
//! postcard (a compact, schema-less binary serde format). Decoding checks
//! the total size before anything else, and postcard never allocates more
//! than the input could hold, so hostile input cannot make us allocate more
//! than [`MAX_FRAME`] per frame.
//!
//! Sync messages larger than [`MAX_CHUNK`] travel as several `SyncPart`
//! frames, reassembled up to [`MAX_MESSAGE`]; so a large document still
//! syncs while every single frame stays small.

use serde::{Deserialize, Serialize};

/// First byte of every frame, so stray bytes are recognised at once.
pub const MAGIC: u8 = b'A';
/// The protocol version this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u8 = 2;
/// Largest frame accepted or produced, in bytes.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Largest slice of a sync message carried by one frame.
pub const MAX_CHUNK: usize = 512 * 1024;
/// Largest reassembled sync message accepted.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Most partnerships or documents listed in one frame.
pub const MAX_LIST: usize = 10_000;
/// Longest human text (error messages) in a frame.
pub const MAX_TEXT: usize = 1024;

/// Whether a peer presents itself as a partner's node or as a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRole {
    Node,
    Relay,
}

/// Why a connection is being closed, for the person on the other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Bytes that do not follow this protocol.
    Protocol,
    /// The peer could not prove it holds the key it claimed.
    Authentication,
    /// The peer is not a member of any partnership we could share.
    NotAMember,
    /// A frame or message exceeded a size limit.
    TooLarge,
    /// The peer was too slow to authenticate.
    Timeout,
    /// The peer sent a document that could not be applied.
    BadDocument,
    /// The peer speaks a protocol version we do not.
    Version,
}

/// One document as listed in a `Documents` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocEntry {
    pub id: [u8; 16],
    pub kind: String,
    pub heads: Vec<[u8; 32]>,
}

/// Everything that crosses the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Sent by both sides first: who I claim to be, and a fresh nonce.
    Hello {
        org: [u8; 32],
        nonce: [u8; 32],
        role: PeerRole,
    },
    /// Signature over the session transcript, proving the claimed key.
    Proof {
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// Per partnership: a digest of its documents' heads, or `None` when we
    /// want the partnership but hold nothing of it yet (just joined).
    Summary {
        partnerships: Vec<([u8; 16], Option<[u8; 32]>)>,
    },
    /// The documents of one partnership with their heads, sent when digests differ.
    Documents {
        partnership: [u8; 16],
        docs: Vec<DocEntry>,
    },
    /// One whole Automerge sync message for a document.
    Sync {
        doc: [u8; 16],
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// A slice of a large sync message: `total` bytes in all, this slice at `offset`.
    SyncPart {
        doc: [u8; 16],
        total: u32,
        offset: u32,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The sender is closing the connection, and why.
    Error { code: ErrorCode, message: String },
    /// The sender has processed our `Summary`: every `Documents` list it
    /// sends in reply came before this frame. Until it arrives we cannot
    /// tell "nothing to sync" from "still answering".
    SummaryDone,
    /// Signed attestations for a document, sent before the sync frames
    /// carrying the changes they cover (see `accord_model::trust`).
    Attest {
        doc: [u8; 16],
        attestations: Vec<serde_bytes::ByteBuf>,
    },
    /// Some of the changes the receiver sent for `doc` were refused (not
    /// applied, not stored, not forwarded); the connection carries on.
    Refused {
        doc: [u8; 16],
        changes: u32,
        reason: String,
        /// The refused changes' hashes (at most [`MAX_LIST`]), so the
        /// sender knows which of its changes the receiver will never hold.
        hashes: Vec<[u8; 32]>,
    },
}

/// Why bytes could not be read as a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("not an Accord frame (bad magic byte)")]
    BadMagic,
    #[error("the peer speaks protocol version {0}; this build speaks version {PROTOCOL_VERSION}")]
    Version(u8),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl Frame {
    /// The frame's kind, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Proof { .. } => "proof",
            Frame::Summary { .. } => "summary",
            Frame::Documents { .. } => "documents",
            Frame::Sync { .. } => "sync",
            Frame::SyncPart { .. } => "sync-part",
            Frame::Error { .. } => "error",
            Frame::SummaryDone => "summary-done",
            Frame::Attest { .. } => "attest",
            Frame::Refused { .. } => "refused",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MAGIC, PROTOCOL_VERSION];
        // Serialising plain data into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, WireError> {
        if bytes.len() > MAX_FRAME {
            return Err(WireError::TooLarge(bytes.len()));
        }
        match bytes {
            [MAGIC, PROTOCOL_VERSION, body @ ..] => {
                let frame: Frame =
                    postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
                frame.check_bounds()?;
                Ok(frame)
            }
            [MAGIC, version, ..] => Err(WireError::Version(*version)),
            _ => Err(WireError::BadMagic),
        }
    }

    /// Limits beyond the frame size: list lengths and text sizes.
    fn check_bounds(&self) -> Result<(), WireError> {
        let too_long = |what: &str| Err(WireError::Malformed(format!("{what} is too long")));
        match self {
            Frame::Summary { partnerships } if partnerships.len() > MAX_LIST => too_long("summary"),
            Frame::Documents { docs, .. } if docs.len() > MAX_LIST => too_long("document list"),
            Frame::Documents { docs, .. }
                if docs
                    .iter()
                    .any(|d| d.kind.len() > 64 || d.heads.len() > 1024) =>
            {
                too_long("document entry")
            }
            Frame::Error { message, .. } if message.len() > MAX_TEXT => too_long("error message"),
            Frame::SyncPart {
                total,
                offset,
                bytes,
                ..
            } if *total as usize > MAX_MESSAGE
                || (*offset as usize).saturating_add(bytes.len()) > *total as usize =>
            {
                Err(WireError::Malformed("sync part outside its message".into()))
            }
            _ => Ok(()),
        }
    }
}

/// Splits an encoded sync message into frames no larger than [`MAX_CHUNK`] of payload.
pub fn sync_frames(doc: [u8; 16], message: Vec<u8>) -> Vec<Frame> {
    if message.len() <= MAX_CHUNK {
        return vec![Frame::Sync { doc, message }];
    }
    let total = message.len() as u32;
    message
        .chunks(MAX_CHUNK)
        .enumerate()
        .map(|(i, chunk)| Frame::SyncPart {
            doc,
            total,
            offset: (i * MAX_CHUNK) as u32,
            bytes: chunk.to_vec(),
        })
        .collect()
}

/// A whole sync message: the document and the message bytes.
pub type Reassembled = ([u8; 16], Vec<u8>);

/// Reassembles one large sync message from its parts, in order.
#[derive(Debug)]
pub struct Reassembly {
    pub doc: [u8; 16],
    buffer: Vec<u8>,
    total: usize,
}

impl Reassembly {
    /// Adds a part. Returns the whole message when complete. Parts must
    /// arrive in order (the transport is ordered), for one document at a time.
    pub fn push(
        slot: &mut Option<Reassembly>,
        doc: [u8; 16],
        total: u32,
        offset: u32,
        bytes: Vec<u8>,
    ) -> Result<Option<Reassembled>, WireError> {
        let total = total as usize;
        let current = slot.get_or_insert_with(|| Reassembly {
            doc,
            buffer: Vec::new(),
            total,
        });
        if current.doc != doc || current.total != total || current.buffer.len() != offset as usize {
            *slot = None;
            return Err(WireError::Malformed("sync parts out of order".into()));
        }
        current.buffer.extend_from_slice(&bytes);
        if current.buffer.len() < total {
            return Ok(None);
        }
        let done = slot.take().map(|r| (r.doc, r.buffer));
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Hello {
                org: [1; 32],
                nonce: [2; 32],
                role: PeerRole::Relay,
            },
            Frame::Proof {
                signature: vec![3; 64],
            },
            Frame::Summary {
                partnerships: vec![([4; 16], Some([5; 32])), ([6; 16], None)],
            },
            Frame::Documents {
                partnership: [7; 16],
                docs: vec![DocEntry {
                    id: [8; 16],
                    kind: "mou".into(),
                    heads: vec![[9; 32]],
                }],
            },
            Frame::Sync {
                doc: [10; 16],
                message: vec![11; 100],
            },
            Frame::Error {
                code: ErrorCode::NotAMember,
                message: "no".into(),
            },
        ]
    }

    #[test]
    fn frames_round_trip() {
        for frame in frames() {
            assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
    }

    /// Pins the wire format: a change here breaks compatibility with
    /// deployed peers and must bump `PROTOCOL_VERSION`.
    #[test]
    fn hello_bytes_are_pinned() {
        let hello = Frame::Hello {
            org: [1; 32],
            nonce: [2; 32],
            role: PeerRole::Node,
        }
        .encode();
        assert_eq!(&hello[..3], &[b'A', 2, 0]);
        assert_eq!(hello.len(), 2 + 1 + 32 + 32 + 1);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        assert_eq!(Frame::decode(b""), Err(WireError::BadMagic));
        assert_eq!(Frame::decode(b"GET / HTTP/1.1"), Err(WireError::BadMagic));
        assert_eq!(Frame::decode(&[MAGIC, 9, 0]), Err(WireError::Version(9)));
        assert!(matches!(
            Frame::decode(&vec![MAGIC; MAX_FRAME + 1]),
            Err(WireError::TooLarge(_))
        ));
        for frame in frames() {
            let bytes = frame.encode();
            for cut in 2..bytes.len() {
                let _ = Frame::decode(&bytes[..cut]);
            }
        }
        // A length prefix claiming a huge list must not allocate it.
        let mut huge = vec![MAGIC, PROTOCOL_VERSION, 2];
        huge.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(Frame::decode(&huge).is_err());
    }

    #[test]
    fn large_messages_split_and_reassemble() {
        let message: Vec<u8> = (0..(MAX_CHUNK * 2 + 10)).map(|i| i as u8).collect();
        let parts = sync_frames([1; 16], message.clone());
        assert_eq!(parts.len(), 3);
        let mut slot = None;
        let mut out = None;
        for part in parts {
            assert!(part.encode().len() <= MAX_FRAME);
            let Frame::SyncPart {
                doc,
                total,
                offset,
                bytes,
            } = part
            else {
                panic!("expected parts")
            };
            out = Reassembly::push(&mut slot, doc, total, offset, bytes).unwrap();
        }
        assert_eq!(out, Some(([1; 16], message)));
    }

    #[test]
    fn out_of_order_parts_are_refused() {
        let mut slot = None;
        assert!(Reassembly::push(&mut slot, [1; 16], 100, 50, vec![0; 10]).is_err());
        assert!(slot.is_none());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut framed = vec![MAGIC, PROTOCOL_VERSION];
            framed.extend(&bytes);
            let _ = Frame::decode(&framed);
            let _ = Frame::decode(&bytes);
        }
    }
}
