//! Support for the end-to-end suites in `tests/`: a fault-injecting TCP proxy, guards for
//! the processes a suite starts (the devserver binary, the `fault-client` binary), and a
//! ledger that checks delivery (every stored message once, in order, nothing silently
//! missing) from what clients observed and what regions stored, and the residency audit
//! that proves from the regions' and the relay's taps that nothing went where a policy
//! forbids it.

pub mod demo;
pub mod ledger;
pub mod process;
pub mod proxy;
pub mod residency;
pub mod rng;

pub use ledger::{EventLog, Sent, Tally};
pub use process::{ClientProcess, DevserverProcess};
pub use proxy::{FaultProxy, Faults, ProxyStats};
pub use rng::Rng;
