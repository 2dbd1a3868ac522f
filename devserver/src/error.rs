//! The devserver's own error type.
//!
//! Owns: the failures of starting, stopping and configuring a federation. Must never carry
//! a token or a message body in its text.

use meridian::model::RegionId;

/// Why a federation (or one of its regions) could not be configured, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DevserverError {
    /// The configuration is inconsistent; the text says where.
    #[error("invalid federation config: {0}")]
    InvalidConfig(String),
    /// A listener could not be bound.
    #[error("could not bind {what} on {addr}: {source}")]
    Bind {
        /// What was being bound ("the directory", "region eu-west").
        what: String,
        /// The address tried.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No region with this id in the federation.
    #[error("unknown region {0}")]
    UnknownRegion(RegionId),
    /// The configuration file could not be read or parsed.
    #[error("could not load config {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}
