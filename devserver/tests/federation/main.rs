//! The reference federation over real loopback sockets: the directory over HTTP, the
//! regions over raw Engine.IO / Socket.IO frames.
#![allow(clippy::unwrap_used, missing_docs)]

mod advertise;
mod binary;
mod directory;
mod dms;
mod epochs;
mod notifications;
mod persistence;
mod regions;
mod restart;
mod retention;
mod sovereignty;
mod support;
mod tokens;
