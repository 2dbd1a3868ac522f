//! The federation's shared registry.
//!
//! Owns: who the users are (by id and by token, static tokens from the config and minted
//! ones with their expiry), which companies and policies govern them, where every space is
//! housed (channels from the config, DMs created at runtime or reloaded from the data
//! directory), each region's store, and what the federation document publishes (the
//! regions' socket URLs, real or advertised, under a version that every change bumps, and
//! each region's public sealing key).
//! The directory and every region read the same registry; a region only ever writes its
//! own store.
//! Must never decide a policy question itself (that is `meridian::policy`), never hold a
//! lock across an `.await`, and never log a token or a message body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use meridian::envelope::SealingKey;
use meridian::model::{
    CompanyId, FederationDoc, GeoPolicy, PolicyId, Region, RegionId, Residency, SessionInfo,
    SpaceId, SpaceKind, SpaceLocation, UserContext, UserId, UserLocation,
};

use crate::DevserverError;
use crate::config::{CompanyConfig, DM_PREFIX, FederationConfig, UserConfig};
use crate::store::{RegionStore, random_hex};

/// How long an expired minted token is still recognised (and refused as expired rather
/// than unknown).
const EXPIRED_TOKENS_REMEMBERED_MS: u64 = 60 * 60 * 1000;
/// At most this many minted tokens are live (or recently expired) at once.
const MAX_MINTED_TOKENS: usize = 100_000;

/// Wall-clock time in ms since the Unix epoch (the devserver is IO, not core: it may).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A user with everything the policy functions need about them.
#[derive(Clone)]
pub(crate) struct Member {
    pub user: UserConfig,
    pub company: CompanyConfig,
    pub ctx: UserContext,
}

impl Member {
    pub fn id(&self) -> &UserId {
        &self.user.id
    }
}

/// Where a space is housed and, for a DM, who may enter it.
#[derive(Debug, Clone)]
pub(crate) struct SpaceRecord {
    pub location: SpaceLocation,
    pub participants: Option<[UserId; 2]>,
}

impl SpaceRecord {
    pub fn admits(&self, user: &UserId) -> bool {
        self.participants
            .as_ref()
            .is_none_or(|pair| pair.contains(user))
    }
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// No user has it.
    Unknown,
    /// A minted token past its expiry.
    Expired,
}

impl TokenRefusal {
    /// The explanation after `unauthorized: `.
    pub fn why(self) -> &'static str {
        match self {
            TokenRefusal::Unknown => "unknown token",
            TokenRefusal::Expired => "token expired",
        }
    }
}

/// A token minted at runtime (`POST /v1/dev/tokens`, `Federation::mint_token`).
struct Minted {
    user: UserId,
    expires_at_ms: u64,
}

/// What the federation document publishes about the regions.
#[derive(Default)]
struct Published {
    /// Where each region really listens.
    real: HashMap<RegionId, String>,
    /// The URLs tests asked to publish instead.
    advertised: HashMap<RegionId, String>,
    /// Bumped by every change to what the document says.
    version: u64,
}

impl Published {
    fn url(&self, region: &RegionId) -> Option<&String> {
        self.advertised
            .get(region)
            .or_else(|| self.real.get(region))
    }
}

/// The registry every server of the federation shares.
pub(crate) struct Shared {
    config: FederationConfig,
    users: HashMap<UserId, UserConfig>,
    tokens: HashMap<String, UserId>,
    minted: Mutex<HashMap<String, Minted>>,
    companies: HashMap<CompanyId, CompanyConfig>,
    policies: HashMap<PolicyId, GeoPolicy>,
    spaces: RwLock<HashMap<SpaceId, SpaceRecord>>,
    stores: HashMap<RegionId, Arc<RegionStore>>,
    published: RwLock<Published>,
}

impl Shared {
    /// Builds the registry from a config that has passed `validate`: creates each
    /// region's store, or reloads it (with its DMs) from the data directory.
    pub fn new(config: FederationConfig) -> Result<Self, DevserverError> {
        let users = config
            .users
            .iter()
            .map(|u| (u.id.clone(), u.clone()))
            .collect();
        let tokens = config
            .users
            .iter()
            .map(|u| (u.token.clone(), u.id.clone()))
            .collect();
        let companies: HashMap<_, _> = config
            .companies
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        let policies: HashMap<_, _> = config
            .policies
            .iter()
            .map(|p| (p.id.clone(), p.clone()))
            .collect();
        let mut spaces: HashMap<_, _> = config
            .spaces
            .iter()
            .filter_map(|s| {
                let company = companies.get(&s.company)?;
                let policy = policies.get(&company.policy)?;
                let record = SpaceRecord {
                    location: SpaceLocation {
                        space: s.id.clone(),
                        region: company.home_region.clone(),
                        company: company.id.clone(),
                        kind: SpaceKind::Channel,
                        residency: policy.residency,
                    },
                    participants: None,
                };
                Some((s.id.clone(), record))
            })
            .collect();
        let mut stores = HashMap::new();
        for r in &config.regions {
            let store = match &config.data_dir {
                None => RegionStore::in_memory(r.id.clone(), r.retention)?,
                Some(dir) => {
                    let (store, dms) = RegionStore::open(r.id.clone(), r.retention, dir)?;
                    for dm in dms {
                        let record = dm.record;
                        let space = record.location.space.clone();
                        let consistent = record.location.region == r.id
                            && record.location.kind == SpaceKind::Dm
                            && record
                                .participants
                                .as_ref()
                                .is_some_and(|[a, b]| dm_space_id(a, b) == space);
                        if !consistent || spaces.contains_key(&space) {
                            tracing::warn!(
                                region = %r.id, space = %space,
                                "a DM record of the data file is inconsistent or repeated: skipped"
                            );
                            continue;
                        }
                        spaces.insert(space, record);
                    }
                    store
                }
            };
            stores.insert(r.id.clone(), Arc::new(store));
        }
        Ok(Self {
            config,
            users,
            tokens,
            minted: Mutex::default(),
            companies,
            policies,
            spaces: RwLock::new(spaces),
            stores,
            published: RwLock::new(Published {
                version: 1,
                ..Published::default()
            }),
        })
    }

    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    pub fn store(&self, region: &RegionId) -> Option<Arc<RegionStore>> {
        self.stores.get(region).cloned()
    }

    /// The public sealing key the federation document publishes for a region.
    pub fn region_public_key(&self, region: &RegionId) -> Option<SealingKey> {
        self.stores.get(region).map(|s| s.published_key())
    }

    fn published(&self) -> std::sync::RwLockReadGuard<'_, Published> {
        self.published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes what the document publishes, bumping its version when that changes.
    fn publish(&self, region: &RegionId, change: impl FnOnce(&mut Published)) {
        let mut p = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = p.url(region).cloned();
        change(&mut p);
        // The first URL of a region is set before the directory serves anything.
        if before.is_some() && p.url(region) != before.as_ref() {
            p.version = p.version.saturating_add(1);
        }
    }

    /// Records where a region really listens.
    pub fn set_socket_url(&self, region: &RegionId, url: String) {
        self.publish(region, |p| {
            p.real.insert(region.clone(), url);
        });
    }

    /// Where a region really listens (`ws://127.0.0.1:PORT`), whatever is advertised.
    pub fn socket_url(&self, region: &RegionId) -> Option<String> {
        self.published().real.get(region).cloned()
    }

    /// Publishes `url` for a region instead of its real one (`None`: the real one again).
    pub fn advertise(&self, region: &RegionId, url: Option<String>) {
        self.publish(region, |p| match url {
            Some(url) => {
                p.advertised.insert(region.clone(), url);
            }
            None => {
                p.advertised.remove(region);
            }
        });
    }

    /// The user a bearer token belongs to: a static token from the config (never
    /// expires) or a minted one that has not expired yet.
    pub fn member_by_token(&self, token: &str) -> Result<Member, TokenRefusal> {
        if let Some(id) = self.tokens.get(token) {
            return self.member(id).ok_or(TokenRefusal::Unknown);
        }
        let user = {
            let minted = lock(&self.minted);
            let m = minted.get(token).ok_or(TokenRefusal::Unknown)?;
            if now_ms() >= m.expires_at_ms {
                return Err(TokenRefusal::Expired);
            }
            m.user.clone()
        };
        self.member(&user).ok_or(TokenRefusal::Unknown)
    }

    /// Mints a random token for `user`, valid for `ttl_ms`; returns it with its expiry
    /// (wall clock, ms since the Unix epoch).
    pub fn mint_token(&self, user: &UserId, ttl_ms: u64) -> Result<(String, u64), DevserverError> {
        if !self.users.contains_key(user) {
            return Err(DevserverError::UnknownUser(user.clone()));
        }
        if ttl_ms == 0 {
            return Err(DevserverError::InvalidInput(
                "a token's time to live must be 1 ms or more".into(),
            ));
        }
        let now = now_ms();
        let expires_at_ms = now.saturating_add(ttl_ms);
        let mut minted = lock(&self.minted);
        minted.retain(|_, m| m.expires_at_ms.saturating_add(EXPIRED_TOKENS_REMEMBERED_MS) > now);
        if minted.len() >= MAX_MINTED_TOKENS {
            return Err(DevserverError::InvalidInput(format!(
                "{MAX_MINTED_TOKENS} minted tokens are live already"
            )));
        }
        let token = loop {
            let token = format!("dev-{}", random_hex(16)?);
            if !self.tokens.contains_key(&token) && !minted.contains_key(&token) {
                break token;
            }
        };
        minted.insert(
            token.clone(),
            Minted {
                user: user.clone(),
                expires_at_ms,
            },
        );
        tracing::info!(user = %user, expires_at_ms, "token minted");
        Ok((token, expires_at_ms))
    }

    /// A user with their company and policy context.
    pub fn member(&self, id: &UserId) -> Option<Member> {
        let user = self.users.get(id)?;
        let company = self.companies.get(&user.company)?;
        let policy = self.policies.get(&company.policy)?;
        Some(Member {
            user: user.clone(),
            company: company.clone(),
            ctx: UserContext {
                user: user.id.clone(),
                home_region: company.home_region.clone(),
                policy: policy.clone(),
            },
        })
    }

    pub fn session_info(&self, m: &Member) -> SessionInfo {
        SessionInfo {
            user: m.user.id.clone(),
            display_name: m.user.display_name.clone(),
            company: m.company.id.clone(),
            home_region: m.company.home_region.clone(),
            policy: m.company.policy.clone(),
            flavor: meridian::policy::determine_flavor_for_user(
                m.company.flavor.as_ref(),
                m.user.flavor_override.as_ref(),
                &self.config.flavors,
            ),
        }
    }

    pub fn user_location(&self, id: &UserId) -> Option<UserLocation> {
        let m = self.member(id)?;
        Some(UserLocation {
            user: m.user.id,
            home_region: m.company.home_region,
            policy: m.company.policy,
        })
    }

    /// Everyone who shares a DM with `user`, wherever the DM is housed.
    pub fn dm_contacts(&self, user: &UserId) -> Vec<UserId> {
        let spaces = self.spaces.read().unwrap_or_else(PoisonError::into_inner);
        let mut contacts: Vec<UserId> = spaces
            .values()
            .filter_map(|s| {
                let [a, b] = s.participants.as_ref()?;
                if a == user {
                    Some(b.clone())
                } else if b == user {
                    Some(a.clone())
                } else {
                    None
                }
            })
            .collect();
        contacts.sort();
        contacts.dedup();
        contacts
    }

    pub fn space(&self, id: &SpaceId) -> Option<SpaceRecord> {
        self.spaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Finds the DM of `a` and `b`, or houses a new one in `region` (which the caller
    /// computed with `meridian::policy::dm_region`) once `persist` has recorded it.
    /// Atomic: two regions racing to create the same pair end up with one space.
    pub fn find_or_create_dm<E>(
        &self,
        sender: &Member,
        peer: &Member,
        region: impl FnOnce() -> Result<RegionId, E>,
        persist: impl FnOnce(&SpaceRecord) -> Result<(), E>,
    ) -> Result<(SpaceRecord, bool), E> {
        let id = dm_space_id(sender.id(), peer.id());
        let mut spaces = self.spaces.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = spaces.get(&id) {
            return Ok((existing.clone(), false));
        }
        let region = region()?;
        let residency = if sender.ctx.policy.residency == Residency::Ds
            || peer.ctx.policy.residency == Residency::Ds
        {
            Residency::Ds
        } else {
            Residency::Dr
        };
        let mut pair = [sender.id().clone(), peer.id().clone()];
        pair.sort();
        let record = SpaceRecord {
            location: SpaceLocation {
                space: id.clone(),
                region,
                company: sender.company.id.clone(),
                kind: SpaceKind::Dm,
                residency,
            },
            participants: Some(pair),
        };
        persist(&record)?;
        spaces.insert(id, record.clone());
        Ok((record, true))
    }

    /// Wipes a region's store (new epoch, no messages, no keys). The DMs housed there
    /// stay known (the directory is not the region), and stay in its data file.
    pub fn wipe_region(&self, region: &RegionId) -> Result<(), DevserverError> {
        let store = self
            .store(region)
            .ok_or_else(|| DevserverError::UnknownRegion(region.clone()))?;
        // The registry's lock first, as in `find_or_create_dm`: no DM created meanwhile
        // can be missing from the rewritten file.
        let spaces = self.spaces.read().unwrap_or_else(PoisonError::into_inner);
        let dms = spaces
            .values()
            .filter(|s| s.location.region == *region && s.participants.is_some())
            .cloned()
            .collect();
        store.wipe(dms)
    }

    pub fn federation_doc(&self) -> FederationDoc {
        let published = self.published();
        FederationDoc {
            version: published.version,
            issued_at_ms: now_ms(),
            regions: self
                .config
                .regions
                .iter()
                .map(|r| Region {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    socket_url: published
                        .url(&r.id)
                        .cloned()
                        .unwrap_or_else(|| "ws://127.0.0.1:0".into()),
                    public_key: self.region_public_key(&r.id).map(|k| k.to_base64()),
                })
                .collect(),
            policies: self.config.policies.clone(),
            flavors: self.config.flavors.clone(),
            expires_at_ms: u64::MAX,
            next_signing_keys: Vec::new(),
        }
    }
}

/// The deterministic id of the DM between two users: `dm:<a>:<b>` with the ids sorted, or
/// a hash of the pair when that would exceed the id length limit.
pub(crate) fn dm_space_id(a: &UserId, b: &UserId) -> SpaceId {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    SpaceId::new(format!("{DM_PREFIX}{a}:{b}")).unwrap_or_else(|_| {
        // FNV-1a: stable across runs and platforms, unlike the std hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in a.as_str().bytes().chain([0]).chain(b.as_str().bytes()) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        SpaceId::new_unchecked(format!("{DM_PREFIX}h{h:016x}"))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dm_ids_are_the_same_whoever_asks_and_always_valid() {
        let ana = UserId::new_unchecked("ana");
        let ben = UserId::new_unchecked("ben");
        assert_eq!(dm_space_id(&ana, &ben).as_str(), "dm:ana:ben");
        assert_eq!(dm_space_id(&ben, &ana), dm_space_id(&ana, &ben));
        let long_a = UserId::new_unchecked("a".repeat(100));
        let long_b = UserId::new_unchecked("b".repeat(100));
        let id = dm_space_id(&long_a, &long_b);
        assert!(SpaceId::new(id.as_str()).is_ok(), "{id}");
        assert_eq!(id, dm_space_id(&long_b, &long_a));
    }
}
