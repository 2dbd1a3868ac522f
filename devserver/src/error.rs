//! The devserver's own error type.
//!
//! Owns: the failures of starting, stopping and configuring a federation. Must never carry
//! a token or a message body in its text.

use meridian::model::{RegionId, UserId};

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
    /// No user with this id in the federation.
    #[error("unknown user {0}")]
    UnknownUser(UserId),
    /// An argument of a call was out of range; the text says which.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A region's data file (see `FederationConfig::data_dir`) could not be created,
    /// read or written.
    #[error("storage {path}: {reason}")]
    Storage {
        /// The file or directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// The platform's secure random source failed (epochs and minted tokens need it).
    #[error("no secure random source: {0}")]
    NoRandomSource(String),
    /// The configuration file could not be read or parsed.
    #[error("could not load config {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}
