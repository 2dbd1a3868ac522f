//! Meridian's reference federation: a directory (HTTP) and several regions (Socket.IO via
//! socketioxide), all on loopback, in-process or as the `devserver` binary.
//!
//! Owns: starting and stopping a whole federation from a [`FederationConfig`] (the
//! directory, the regions, and the relay between them), and the hooks tests need (a tap
//! per region and one for the relay, stopping and restarting a region on the same port
//! with or without its stored state, retention windows, minted tokens, advertised socket
//! URLs, directory faults, the stored messages, the regions' sealing keys). It reuses
//! `meridian`'s model, protocol, envelope and policy functions and must never
//! re-implement a policy rule or a cipher; it must never log a token, a key or a message
//! body, and must never bind anything but 127.0.0.1.
//!
//! Data sovereignty (DS): a space whose owner's policy says `residency: ds` takes only
//! sealed sends (opened with the housing region's key) and delivers only sealed copies,
//! each to the receiving socket's client key; notifications for a user homed elsewhere
//! cross the relay sealed to the home region's key, and never go to a region the governing
//! policy forbids.
//!
//! ```no_run
//! # async fn demo() -> Result<(), devserver::DevserverError> {
//! let fed = devserver::Federation::start(devserver::FederationConfig::default_three_regions()).await?;
//! let directory = fed.directory_url(); // http://127.0.0.1:PORT
//! # let _ = directory;
//! fed.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;
pub mod directory;
mod error;
mod journal;
mod net;
mod notify;
mod publisher;

/// How long a federation document is valid; it is re-issued after half of that.
const DOCUMENT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// The federation's signing key: kept in `<data dir>/federation-signing.key` so clients'
/// pinned key stays valid across restarts of the binary; fresh per run without a data dir.
fn signing_key(
    data_dir: Option<&std::path::Path>,
) -> Result<meridian::trust::DocumentSigner, DevserverError> {
    use meridian::trust::DocumentSigner;
    let random = || {
        DocumentSigner::generate("federation-0")
            .map_err(|e| DevserverError::NoRandomSource(e.to_string()))
    };
    let Some(dir) = data_dir else {
        return random();
    };
    let path = dir.join("federation-signing.key");
    let storage = |reason: String| DevserverError::Storage {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes: Vec<u8> = (0..text.trim().len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(text.trim().get(i..i + 2)?, 16).ok())
                .collect();
            let seed: [u8; 32] = bytes
                .try_into()
                .map_err(|_| storage("not a 32-byte hex key".into()))?;
            Ok(DocumentSigner::from_seed("federation-0", &seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| DevserverError::NoRandomSource(e.to_string()))?;
            std::fs::create_dir_all(dir).map_err(|e| storage(e.to_string()))?;
            let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&path, hex).map_err(|e| storage(e.to_string()))?;
            Ok(DocumentSigner::from_seed("federation-0", &seed))
        }
        Err(e) => Err(storage(e.to_string())),
    }
}
mod region;
mod relay;
mod sealing;
mod state;
mod store;
pub mod tap;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian::envelope::{KeyPair, SealingKey};
use meridian::model::{Message, RegionId, SpaceId, SpaceLocation, UserId};

pub use config::{CompanyConfig, FederationConfig, RegionConfig, SpaceConfig, UserConfig};
pub use directory::DirectoryFault;
pub use error::DevserverError;
pub use publisher::DocumentFault;
pub use store::DROPPED_KEYS_REMEMBERED;
pub use tap::{RegionTap, RelayRecord, RelayTap, TapKind, TapRecord};

use crate::region::RegionServer;
use crate::relay::Relay;
use crate::state::{Shared, lock};

/// A running federation: the directory and every region, each on its own port.
///
/// Dropping it aborts every server; [`Federation::shutdown`] stops them gracefully.
pub struct Federation {
    shared: Arc<Shared>,
    relay: Arc<Relay>,
    fault: Arc<Mutex<Option<DirectoryFault>>>,
    publisher: Arc<publisher::Publisher>,
    misdirected: Arc<Mutex<std::collections::HashMap<SpaceId, RegionId>>>,
    directory: net::Server,
    regions: Vec<RegionServer>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("directory", &self.directory_url())
            .field(
                "regions",
                &self
                    .regions
                    .iter()
                    .map(|r| (r.id().as_str(), r.port()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Federation {
    /// Validates `config`, loads the regions' state from its data directory (if any),
    /// then binds and serves every region and the directory on 127.0.0.1 (the configured
    /// ports, or free ones).
    pub async fn start(config: FederationConfig) -> Result<Federation, DevserverError> {
        config.validate()?;
        let shared = Arc::new(Shared::new(config.clone())?);
        let relay = Arc::new(Relay::new());
        let mut regions = Vec::with_capacity(config.regions.len());
        for rc in &config.regions {
            let store = shared
                .store(&rc.id)
                .ok_or_else(|| DevserverError::UnknownRegion(rc.id.clone()))?;
            let server = RegionServer::new(
                rc.id.clone(),
                shared.clone(),
                store,
                RegionTap::new(rc.id.clone()),
                rc.port.unwrap_or(0),
                relay.clone(),
            );
            // On error, the regions started so far are aborted when `regions` drops.
            server.start().await?;
            regions.push(server);
        }
        let fault = Arc::new(Mutex::new(None));
        let publisher = Arc::new(publisher::Publisher::new(
            signing_key(config.data_dir.as_deref())?,
            DOCUMENT_LIFETIME,
        ));
        let misdirected = Arc::default();
        let port = config.directory_port.unwrap_or(0);
        let listener = net::bind("the directory", port).await?;
        let router = directory::router(directory::DirectoryState {
            shared: shared.clone(),
            fault: fault.clone(),
            publisher: publisher.clone(),
            misdirected: Arc::clone(&misdirected),
        });
        let directory =
            net::Server::spawn("directory".into(), listener, router).map_err(|source| {
                DevserverError::Bind {
                    what: "the directory".into(),
                    addr: format!("127.0.0.1:{port}"),
                    source,
                }
            })?;
        tracing::info!(url = %format!("http://{}", directory.addr()), "directory up");
        Ok(Federation {
            shared,
            relay,
            fault,
            publisher,
            misdirected,
            directory,
            regions,
        })
    }

    /// The keys a client must pin to trust this federation's documents.
    pub fn federation_keys(&self) -> Vec<meridian::model::FederationKey> {
        self.publisher.trust_anchors()
    }

    /// A client configuration for this federation: its directory, `token`, and its keys
    /// pinned.
    pub fn client_config(&self, token: impl Into<String>) -> meridian::ClientConfig {
        meridian::ClientConfig::new(self.directory_url(), token)
            .with_federation_keys(self.federation_keys())
    }

    /// Makes the directory serve a bad document (see [`DocumentFault`]) until cleared.
    pub fn set_document_fault(&self, fault: Option<DocumentFault>) {
        self.publisher.set_fault(fault);
    }

    /// Starts a signing-key rotation: the next document, signed by the current key,
    /// announces the returned key. [`Federation::finish_key_rotation`] switches to it.
    pub fn begin_key_rotation(&self) -> Result<meridian::model::FederationKey, DevserverError> {
        self.publisher
            .begin_rotation()
            .map_err(|e| DevserverError::NoRandomSource(e.to_string()))
    }

    /// Ends a rotation: documents are signed with the announced key from now on.
    pub fn finish_key_rotation(&self) {
        self.publisher.finish_rotation();
    }

    /// Makes the directory locate `space` in `region` (or tell the truth again with
    /// `None`): an adversarial directory, for tests of what clients refuse.
    pub fn misdirect_space(&self, space: &SpaceId, region: Option<RegionId>) {
        let mut map = state::lock(&self.misdirected);
        match region {
            Some(r) => map.insert(space.clone(), r),
            None => map.remove(space),
        };
    }

    /// The directory's base URL, `http://127.0.0.1:PORT`.
    pub fn directory_url(&self) -> String {
        format!("http://{}", self.directory.addr())
    }

    /// A region's Socket.IO endpoint, `ws://127.0.0.1:PORT` (the SDK adds `/socket.io/`),
    /// where it really listens, whatever [`Federation::advertise_region`] publishes.
    /// Stays the same across stops and restarts.
    pub fn region_socket_url(&self, region: &RegionId) -> Option<String> {
        self.region(region).ok()?;
        self.shared.socket_url(region)
    }

    /// The address a region really listens on (kept across stops and restarts), e.g. to
    /// put a proxy in front of it.
    pub fn region_addr(&self, region: &RegionId) -> Option<SocketAddr> {
        let port = self.region(region).ok()?.port();
        (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Makes the federation document publish `socket_url` (`ws://` or `wss://`) for the
    /// region instead of its real URL, or the real one again with `None`. Clients that
    /// read the document from then on connect there (a fault proxy, say). Every change
    /// of what the document says bumps its `version`.
    pub fn advertise_region(
        &self,
        region: &RegionId,
        socket_url: Option<String>,
    ) -> Result<(), DevserverError> {
        self.region(region)?;
        if let Some(url) = &socket_url {
            let scheme_ok = ["ws://", "wss://"]
                .iter()
                .any(|s| url.len() > s.len() && url.starts_with(s));
            if !scheme_ok {
                return Err(DevserverError::InvalidInput(format!(
                    "an advertised socket URL must be ws:// or wss://, not {url:?}"
                )));
            }
        }
        self.shared.advertise(region, socket_url);
        Ok(())
    }

    /// Changes how many newest messages per space the region keeps (`None`: all). It
    /// applies at each space's next store: older messages are dropped then.
    pub fn set_retention(
        &self,
        region: &RegionId,
        retention: Option<usize>,
    ) -> Result<(), DevserverError> {
        self.region(region)?.set_retention(retention);
        Ok(())
    }

    /// The history epoch of a region (the same for all its spaces). It changes only with
    /// [`Federation::restart_region_without_state`].
    pub fn region_epoch(&self, region: &RegionId) -> Option<String> {
        self.region(region).ok()?;
        self.shared.store(region).map(|s| s.epoch())
    }

    /// Mints a bearer token for `user`, valid for `ttl` (whole milliseconds, at least 1)
    /// wherever the user's static token is; after that the directory answers 401
    /// (`unauthorized: token expired`) and the regions refuse to connect. Minted tokens
    /// live in memory only.
    pub fn mint_token(&self, user: &UserId, ttl: Duration) -> Result<String, DevserverError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.shared.mint_token(user, ttl_ms).map(|(token, _)| token)
    }

    /// The regions, in the order of the config.
    pub fn region_ids(&self) -> Vec<RegionId> {
        self.regions.iter().map(|r| r.id().clone()).collect()
    }

    /// The configuration the federation runs.
    pub fn config(&self) -> &FederationConfig {
        self.shared.config()
    }

    /// A region's tap (a cheap clone sharing the region's log).
    pub fn tap(&self, region: &RegionId) -> Option<RegionTap> {
        self.region(region).ok().map(|r| r.tap().clone())
    }

    /// The relay's tap: every envelope it carried between regions, and every notification
    /// withheld because a policy forbade its target region (a cheap clone sharing the log).
    pub fn relay_tap(&self) -> RelayTap {
        self.relay.tap().clone()
    }

    /// The region's public sealing key, as the federation document publishes it (what a
    /// client seals sends to). It is generated when the region's store is created and
    /// kept across stops and starts, and, with a data dir, across processes.
    pub fn region_public_key(&self, region: &RegionId) -> Option<SealingKey> {
        self.region(region).ok()?;
        self.shared.region_public_key(region)
    }

    /// Test hook: gives the region a new key pair to open with, WITHOUT changing the
    /// federation document (nor the data file). A payload sealed to the published key no
    /// longer opens there: sends are answered `integrity` and nothing is stored, and
    /// envelopes the relay brings are dropped. There is no way back but a new federation
    /// (or, with a data dir, a new process).
    pub fn swap_region_key(&self, region: &RegionId) -> Result<(), DevserverError> {
        self.region(region)?;
        let store = self
            .shared
            .store(region)
            .ok_or_else(|| DevserverError::UnknownRegion(region.clone()))?;
        store.swap_key_pair(KeyPair::generate());
        tracing::info!(region = %region, "region key pair swapped (test hook)");
        Ok(())
    }

    /// Disconnects every socket of the region (clients see their connection close) and
    /// frees its port. Its store, its tap and its DMs are kept. Stopping a stopped
    /// region does nothing.
    pub async fn stop_region(&self, region: &RegionId) -> Result<(), DevserverError> {
        self.region(region)?.stop().await;
        Ok(())
    }

    /// Serves a stopped region again on the same port, with the same store. Starting a
    /// running region does nothing.
    pub async fn start_region(&self, region: &RegionId) -> Result<(), DevserverError> {
        self.region(region)?.start().await
    }

    /// [`Federation::stop_region`] then [`Federation::start_region`].
    pub async fn restart_region(&self, region: &RegionId) -> Result<(), DevserverError> {
        let r = self.region(region)?;
        r.stop().await;
        r.start().await
    }

    /// Simulates a region that lost its data: stops it, forgets its stored messages and
    /// idempotency keys (in memory and in its data file), gives it a new history epoch,
    /// and starts it again on the same port. DMs housed there stay known.
    pub async fn restart_region_without_state(
        &self,
        region: &RegionId,
    ) -> Result<(), DevserverError> {
        self.region(region)?.restart_without_state().await
    }

    /// Whether the region is currently serving.
    pub async fn is_region_running(&self, region: &RegionId) -> Result<bool, DevserverError> {
        Ok(self.region(region)?.is_running().await)
    }

    /// Makes the directory answer every `/v1` request but the `/v1/dev/` controls with
    /// `fault` (or normally again with `None`).
    pub fn set_directory_fault(&self, fault: Option<DirectoryFault>) {
        *lock(&self.fault) = fault;
    }

    /// Where a space is housed (channels from the config, and DMs created so far).
    pub fn space_location(&self, space: &SpaceId) -> Option<SpaceLocation> {
        self.shared.space(space).map(|s| s.location)
    }

    /// The messages of a space still held by the region that houses it (within its
    /// retention window), oldest first.
    pub fn messages(&self, space: &SpaceId) -> Vec<Message> {
        self.shared
            .space(space)
            .and_then(|s| self.shared.store(&s.location.region))
            .map(|store| store.messages(space))
            .unwrap_or_default()
    }

    /// Stops every region and the directory, freeing every port.
    pub async fn shutdown(self) {
        for r in &self.regions {
            r.stop().await;
        }
        self.directory.stop().await;
        tracing::info!("federation down");
    }

    fn region(&self, id: &RegionId) -> Result<&RegionServer, DevserverError> {
        self.regions
            .iter()
            .find(|r| r.id() == id)
            .ok_or_else(|| DevserverError::UnknownRegion(id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync>() {}

    #[test]
    fn a_federation_can_be_shared_and_driven_from_any_task() {
        is_send_sync::<Federation>();
        is_send_sync::<RegionTap>();
        is_send_sync::<RelayTap>();
        let start = Federation::start(FederationConfig::default_three_regions());
        is_send(&start);
        drop(start);
        let _compile_time_only = |fed: &Federation, r: &RegionId| {
            is_send(&fed.restart_region(r));
            is_send(&fed.restart_region_without_state(r));
        };
    }
}
