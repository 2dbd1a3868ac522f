//! The reference federation over real loopback sockets: the directory over HTTP, the
//! regions over raw Engine.IO / Socket.IO frames.
#![allow(clippy::unwrap_used, missing_docs)]

mod directory;
mod dms;
mod regions;
mod restart;
mod support;
