//! The simulation harness: a simulated region, a fake network and clock, simulated clients
//! (session + outbox + app), and the invariants. See `world.rs` for the story of a run.

pub mod check;
pub mod client;
pub mod net;
pub mod plan;
pub mod region;
pub mod world;

pub use check::{Report, Stats};
pub use plan::{Mix, Tamper};
pub use region::RegionBug;
pub use world::run;
