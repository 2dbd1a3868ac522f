//! Wire codec: Engine.IO v4 packets carrying Socket.IO v5 packets, WebSocket transport only.
//!
//! Owns: turning text frames into typed packets and back, refusing anything malformed with
//! [`CodecError`]. Must never allocate without bound from untrusted input beyond the frame
//! itself, never panic on any input, and never do IO.
//!
//! The formats follow the public protocol specifications of Engine.IO (revision 4) and
//! Socket.IO (revision 5).

pub mod engineio;
pub mod socketio;

pub use engineio::{EioPacket, OpenHandshake};
pub use socketio::{SioPacket, SioPacketKind};

/// A frame that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed frame: {0}")]
pub struct CodecError(pub String);

impl From<CodecError> for crate::Error {
    fn from(e: CodecError) -> Self {
        crate::Error::Protocol(e.0)
    }
}
