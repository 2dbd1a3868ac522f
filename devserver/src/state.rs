//! The federation's shared registry and each region's message store.
//!
//! Owns: who the users are (by id and by token), which companies and policies govern them,
//! where every space is housed (channels from the config, DMs created at runtime), and per
//! region the stored messages with their seqs and idempotency receipts. The directory and
//! every region read the same registry; a region only ever writes its own store.
//! Must never decide a policy question itself (that is `meridian::policy`), never hold a
//! lock across an `.await`, and never log a token or a message body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use meridian::model::{
    CompanyId, FederationDoc, GeoPolicy, IdempotencyKey, Message, MessageId, PolicyId, Region,
    RegionId, Residency, SendReceipt, SessionInfo, SpaceId, SpaceKind, SpaceLocation, UserContext,
    UserId, UserLocation,
};
use meridian::protocol::SendRequest;

use crate::config::{CompanyConfig, DM_PREFIX, FederationConfig, UserConfig};

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

/// The registry every server of the federation shares.
pub(crate) struct Shared {
    config: FederationConfig,
    users: HashMap<UserId, UserConfig>,
    tokens: HashMap<String, UserId>,
    companies: HashMap<CompanyId, CompanyConfig>,
    policies: HashMap<PolicyId, GeoPolicy>,
    spaces: RwLock<HashMap<SpaceId, SpaceRecord>>,
    stores: HashMap<RegionId, Arc<RegionStore>>,
    socket_urls: RwLock<HashMap<RegionId, String>>,
}

impl Shared {
    /// Builds the registry from a config that has passed `validate`.
    pub fn new(config: FederationConfig) -> Self {
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
        let spaces = config
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
        let stores = config
            .regions
            .iter()
            .map(|r| (r.id.clone(), Arc::new(RegionStore::new(r.id.clone()))))
            .collect();
        Self {
            config,
            users,
            tokens,
            companies,
            policies,
            spaces: RwLock::new(spaces),
            stores,
            socket_urls: RwLock::default(),
        }
    }

    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    pub fn store(&self, region: &RegionId) -> Option<Arc<RegionStore>> {
        self.stores.get(region).cloned()
    }

    pub fn set_socket_url(&self, region: &RegionId, url: String) {
        self.socket_urls
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region.clone(), url);
    }

    pub fn socket_url(&self, region: &RegionId) -> Option<String> {
        self.socket_urls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(region)
            .cloned()
    }

    /// The user a bearer token belongs to.
    pub fn member_by_token(&self, token: &str) -> Option<Member> {
        self.tokens.get(token).and_then(|id| self.member(id))
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

    pub fn space(&self, id: &SpaceId) -> Option<SpaceRecord> {
        self.spaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Finds the DM of `a` and `b`, or houses a new one in `region` (which the caller
    /// computed with `meridian::policy::dm_region`). Atomic: two regions racing to create
    /// the same pair end up with one space.
    pub fn find_or_create_dm<E>(
        &self,
        sender: &Member,
        peer: &Member,
        region: impl FnOnce() -> Result<RegionId, E>,
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
        spaces.insert(id, record.clone());
        Ok((record, true))
    }

    pub fn federation_doc(&self) -> FederationDoc {
        FederationDoc {
            version: 1,
            issued_at_ms: now_ms(),
            regions: self
                .config
                .regions
                .iter()
                .map(|r| Region {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    socket_url: self
                        .socket_url(&r.id)
                        .unwrap_or_else(|| "ws://127.0.0.1:0".into()),
                    public_key: None,
                })
                .collect(),
            policies: self.config.policies.clone(),
            flavors: self.config.flavors.clone(),
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

/// What happened to a send.
pub(crate) enum Append {
    /// Stored under a new seq.
    Stored(Message, SendReceipt),
    /// The key was seen before: the original receipt, nothing stored.
    Duplicate(SendReceipt),
}

#[derive(Default)]
struct SpaceLog {
    /// `messages[i].seq == i + 1`: seqs are 1-based and gap-free.
    messages: Vec<Message>,
    receipts: HashMap<IdempotencyKey, SendReceipt>,
}

#[derive(Default)]
struct StoreInner {
    spaces: HashMap<SpaceId, SpaceLog>,
    next_message: u64,
}

/// One region's messages. Survives the region's restarts.
pub(crate) struct RegionStore {
    region: RegionId,
    inner: Mutex<StoreInner>,
}

impl RegionStore {
    fn new(region: RegionId) -> Self {
        Self {
            region,
            inner: Mutex::default(),
        }
    }

    /// Stores a message once per (space, key).
    pub fn append(&self, req: &SendRequest, sender: &UserId) -> Append {
        let mut inner = lock(&self.inner);
        let StoreInner {
            spaces,
            next_message,
        } = &mut *inner;
        let log = spaces.entry(req.space.clone()).or_default();
        if let Some(receipt) = log.receipts.get(&req.key) {
            return Append::Duplicate(receipt.clone());
        }
        *next_message += 1;
        let counter = *next_message;
        let seq = u64::try_from(log.messages.len()).unwrap_or(u64::MAX - 1) + 1;
        let id = MessageId::new(format!("{}-{counter}", self.region))
            .unwrap_or_else(|_| MessageId::new_unchecked(format!("m-{counter}")));
        let message = Message {
            space: req.space.clone(),
            seq,
            id: id.clone(),
            sender: sender.clone(),
            body: req.body.clone(),
            sent_at_ms: now_ms(),
            trace: req.trace.clone(),
        };
        let receipt = SendReceipt {
            message_id: id,
            seq,
            sent_at_ms: message.sent_at_ms,
        };
        log.messages.push(message.clone());
        log.receipts.insert(req.key.clone(), receipt.clone());
        Append::Stored(message, receipt)
    }

    /// The newest seq of a space (0 when empty).
    pub fn head_seq(&self, space: &SpaceId) -> u64 {
        lock(&self.inner).spaces.get(space).map_or(0, |log| {
            u64::try_from(log.messages.len()).unwrap_or(u64::MAX)
        })
    }

    /// Up to `limit` messages with a seq above `since`, oldest first.
    pub fn after(&self, space: &SpaceId, since: u64, limit: usize) -> Vec<Message> {
        let inner = lock(&self.inner);
        let Some(log) = inner.spaces.get(space) else {
            return Vec::new();
        };
        let start = usize::try_from(since).unwrap_or(usize::MAX);
        log.messages
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest `limit` messages with a seq below `before` (all when `None`), oldest first.
    pub fn before(&self, space: &SpaceId, before: Option<u64>, limit: usize) -> Vec<Message> {
        let inner = lock(&self.inner);
        let Some(log) = inner.spaces.get(space) else {
            return Vec::new();
        };
        let end = before.map_or(log.messages.len(), |b| {
            usize::try_from(b.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(log.messages.len())
        });
        log.messages[end.saturating_sub(limit)..end].to_vec()
    }

    /// Every message of a space, oldest first.
    pub fn messages(&self, space: &SpaceId) -> Vec<Message> {
        lock(&self.inner)
            .spaces
            .get(space)
            .map(|log| log.messages.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn send(space: &str, key: &str) -> SendRequest {
        SendRequest {
            space: SpaceId::new_unchecked(space),
            key: IdempotencyKey::new_unchecked(key),
            body: "hi".into(),
            trace: None,
        }
    }

    #[test]
    fn seqs_are_gap_free_per_space_and_keys_dedupe() {
        let store = RegionStore::new(RegionId::new_unchecked("eu-west"));
        let ana = UserId::new_unchecked("ana");
        let Append::Stored(m1, r1) = store.append(&send("a", "k1"), &ana) else {
            panic!("expected a store")
        };
        assert_eq!((m1.seq, r1.seq), (1, 1));
        let Append::Duplicate(again) = store.append(&send("a", "k1"), &ana) else {
            panic!("expected a duplicate")
        };
        assert_eq!(again, r1);
        let Append::Stored(m2, _) = store.append(&send("a", "k2"), &ana) else {
            panic!("expected a store")
        };
        assert_eq!(m2.seq, 2);
        let Append::Stored(other, _) = store.append(&send("b", "k1"), &ana) else {
            panic!("the same key in another space is another message")
        };
        assert_eq!(other.seq, 1);
        assert_ne!(other.id, m1.id);
        assert_eq!(store.head_seq(&SpaceId::new_unchecked("a")), 2);
    }

    #[test]
    fn pages_are_oldest_first_and_bounded() {
        let store = RegionStore::new(RegionId::new_unchecked("eu-west"));
        let ana = UserId::new_unchecked("ana");
        for i in 0..10 {
            store.append(&send("a", &format!("k{i}")), &ana);
        }
        let a = SpaceId::new_unchecked("a");
        let seqs = |v: Vec<Message>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.after(&a, 7, 100)), vec![8, 9, 10]);
        assert_eq!(seqs(store.after(&a, 2, 3)), vec![3, 4, 5]);
        assert_eq!(seqs(store.after(&a, 10, 3)), Vec::<u64>::new());
        assert_eq!(seqs(store.after(&a, u64::MAX, 3)), Vec::<u64>::new());
        assert_eq!(seqs(store.before(&a, None, 3)), vec![8, 9, 10]);
        assert_eq!(seqs(store.before(&a, Some(4), 10)), vec![1, 2, 3]);
        assert_eq!(seqs(store.before(&a, Some(1), 10)), Vec::<u64>::new());
        assert_eq!(seqs(store.before(&a, Some(0), 10)), Vec::<u64>::new());
        assert_eq!(seqs(store.before(&a, Some(u64::MAX), 2)), vec![9, 10]);
        assert_eq!(seqs(store.before(&a, None, 0)), Vec::<u64>::new());
    }

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
