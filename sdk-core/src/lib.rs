//! Meridian: a realtime client SDK for federations that span several regions under
//! data-residency law.
//!
//! Feature code calls intent-level APIs on [`Client`]; the SDK resolves which region houses
//! a space, checks the user's geographic policy, and delivers over the right regional
//! socket, exactly once and in order. See ARCHITECTURE.md for the layers.
//!
//! ```no_run
//! # #[cfg(feature = "native")] // `connect_native` is the native driver's
//! # async fn demo() -> meridian::Result<()> {
//! use meridian::{Client, ClientConfig, model::SpaceId};
//! let client = Client::connect_native(ClientConfig::new("http://127.0.0.1:7700", "ana-token")).await?;
//! let space = SpaceId::new("acme:general")?;
//! client.join_space(&space).await?;
//! let receipt = client.send_message(&space, "hello").await?.await?;
//! println!("stored as #{}", receipt.seq);
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod client;
pub mod codec;
pub mod credentials;
pub mod directory;
pub mod driver;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod json;
pub mod log;
pub mod model;
pub mod outbox;
pub mod policy;
pub mod protocol;
pub mod secret;
pub mod session;
pub mod sorted;
pub mod store;
pub mod time;
pub mod trust;

pub use client::{Client, ClientConfig, Event, JoinedSpace, PendingSend};
pub use credentials::{Token, TokenProvider};
pub use error::{Error, ErrorCode, Result};
pub use session::ConnectionState;
