//! The one public error type, with stable codes.
//!
//! Owns: the mapping of every failure the SDK can report to a code that bindings, logs and
//! the wire protocol share. Must never carry a message body or a token in its text.

use serde::{Deserialize, Serialize};

use crate::model::RegionId;

/// Stable, machine-readable error codes. The string form is part of the API (it is what
/// the wire protocol, the TypeScript `code` and the Kotlin/Swift enums carry): never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The user's geographic policy forbids the target region.
    PolicyViolation,
    /// The space, user or message does not exist.
    NotFound,
    /// The token was rejected or the user may not do this.
    Unauthorized,
    /// The app passed something the SDK or the server will not accept.
    InvalidInput,
    /// The directory could not be reached or answered something unusable.
    DirectoryUnavailable,
    /// The client was disconnected by the app; no further work is accepted.
    Closed,
    /// No answer came in time.
    Timeout,
    /// A peer broke the wire protocol.
    Protocol,
    /// The space lives in another region now; the directory must be asked again.
    Moved,
    /// The transport failed (connection refused, reset, ...).
    Transport,
    /// A sealed payload or a signed document failed its check (tampered, replayed into
    /// another context, sealed to another key, signed by an unknown key, expired, rolled back).
    Integrity,
    /// The server failed in a way it did not classify.
    Internal,
}

impl ErrorCode {
    /// Parses the stable string form; unknown codes from a newer server map to `Internal`.
    pub fn parse(code: &str) -> Self {
        Self::from_wire_name(code).unwrap_or(Self::Internal)
    }
}

// `as_str` (the stable string form, e.g. `policy_violation`), `from_wire_name`, `FromJson`.
crate::json::string_enum!(ErrorCode {
    PolicyViolation => "policy_violation",
    NotFound => "not_found",
    Unauthorized => "unauthorized",
    InvalidInput => "invalid_input",
    DirectoryUnavailable => "directory_unavailable",
    Closed => "closed",
    Timeout => "timeout",
    Protocol => "protocol",
    Moved => "moved",
    Transport => "transport",
    Integrity => "integrity",
    Internal => "internal",
});

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure the SDK reports. Each variant has one stable [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The user's geographic policy forbids sending to or entering `region`.
    #[error("policy violation: {reason} (region {region})")]
    PolicyViolation {
        /// The region the policy forbids.
        region: RegionId,
        /// Why, in words fit for a developer (never contains user content).
        reason: String,
    },
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The token was rejected, or the user may not do this.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The app passed something unacceptable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The directory could not be reached or answered something unusable.
    #[error("directory unavailable: {0}")]
    DirectoryUnavailable(String),
    /// The client is closed.
    #[error("client closed")]
    Closed,
    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A peer broke the wire protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The space moved to another region.
    #[error("moved: {0}")]
    Moved(String),
    /// The transport failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// A sealed payload or signed document failed its check.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The server reported a failure it did not classify.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::PolicyViolation { .. } => ErrorCode::PolicyViolation,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::InvalidInput(_) => ErrorCode::InvalidInput,
            Self::DirectoryUnavailable(_) => ErrorCode::DirectoryUnavailable,
            Self::Closed => ErrorCode::Closed,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Protocol(_) => ErrorCode::Protocol,
            Self::Moved(_) => ErrorCode::Moved,
            Self::Transport(_) => ErrorCode::Transport,
            Self::Integrity(_) => ErrorCode::Integrity,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The explanation without the code's prefix: what travels as an [`ErrorBody`]'s
    /// message, so that the receiving side's `Display` doesn't say "not found" twice.
    ///
    /// [`ErrorBody`]: crate::protocol::ErrorBody
    pub fn detail(&self) -> String {
        match self {
            Self::PolicyViolation { reason, .. } => reason.clone(),
            Self::Closed => "client closed".into(),
            Self::NotFound(m)
            | Self::Unauthorized(m)
            | Self::InvalidInput(m)
            | Self::DirectoryUnavailable(m)
            | Self::Timeout(m)
            | Self::Protocol(m)
            | Self::Moved(m)
            | Self::Transport(m)
            | Self::Integrity(m)
            | Self::Internal(m) => m.clone(),
        }
    }

    /// Rebuilds an error from a code and a message received over the wire.
    pub fn from_wire(body: &crate::protocol::ErrorBody) -> Self {
        let msg = body.message.clone();
        match body.code {
            ErrorCode::PolicyViolation => Self::PolicyViolation {
                region: body
                    .region
                    .clone()
                    .unwrap_or_else(|| RegionId::new_unchecked("unknown")),
                reason: msg,
            },
            ErrorCode::NotFound => Self::NotFound(msg),
            ErrorCode::Unauthorized => Self::Unauthorized(msg),
            ErrorCode::InvalidInput => Self::InvalidInput(msg),
            ErrorCode::DirectoryUnavailable => Self::DirectoryUnavailable(msg),
            ErrorCode::Closed => Self::Closed,
            ErrorCode::Timeout => Self::Timeout(msg),
            ErrorCode::Protocol => Self::Protocol(msg),
            ErrorCode::Moved => Self::Moved(msg),
            ErrorCode::Transport => Self::Transport(msg),
            ErrorCode::Integrity => Self::Integrity(msg),
            ErrorCode::Internal => Self::Internal(msg),
        }
    }

    /// Whether trying the same thing again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            ErrorCode::Timeout
                | ErrorCode::Transport
                | ErrorCode::DirectoryUnavailable
                | ErrorCode::Moved
        )
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
