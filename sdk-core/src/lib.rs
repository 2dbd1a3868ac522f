//! Meridian: a realtime client SDK for federations that span several regions under
//! data-residency law.
//!
//! Feature code calls intent-level APIs on [`Client`]; the SDK resolves which region houses
//! a space, checks the user's geographic policy, and delivers over the right regional
//! socket. See ARCHITECTURE.md for the layers.

pub mod codec;
pub mod error;
pub mod model;
pub mod policy;
pub mod protocol;

pub use error::{Error, ErrorCode, Result};
