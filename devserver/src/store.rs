//! One region's message store.
//!
//! Owns, per space of the region: the messages still held (the retention window), the
//! head seq, the idempotency receipts (and which of them to forget), and the region's
//! history epoch; the answers to a join's catch-up and to a history page; the region's
//! sealing key pair (generated when the store is created, kept across stops and starts);
//! and, with a data directory, the region's [`Journal`]: every stored message and every DM
//! created here is written there before the caller acknowledges it, the key pair when it
//! is generated, and all of it replayed when the region's federation starts again.
//! Must never hold its lock across an `.await`, never acknowledge a message the journal
//! failed to write, never log a message body or a key, and never panic on what the
//! journal holds.
//!
//! Retention: with `retention = Some(n)`, storing a message drops the oldest held ones of
//! its space until at most `n` remain (a change of `n` applies at the space's next store).
//! The receipts of dropped messages are remembered for the newest
//! [`DROPPED_KEYS_REMEMBERED`] of them per space, so a late retry of a dropped message is
//! still answered with its first receipt; a retry with a key forgotten past that bound is
//! stored as a new message.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use meridian::envelope::KeyPair;
use meridian::model::{IdempotencyKey, Message, MessageId, RegionId, SendReceipt, SpaceId, UserId};
use meridian::protocol::{JoinReply, JoinRequest, SendRequest};

use crate::DevserverError;
use crate::journal::{self, FORMAT, Journal, PrivateKeyHex, Record};
use crate::state::{SpaceRecord, lock, now_ms};

/// How many idempotency keys of messages dropped by retention a space remembers.
pub const DROPPED_KEYS_REMEMBERED: usize = 1024;

/// What happened to a send.
pub(crate) enum Append {
    /// Stored under a new seq (and journaled, with a data directory).
    Stored(Box<Message>, SendReceipt),
    /// The key was seen before: the original receipt, nothing stored.
    Duplicate(SendReceipt),
    /// The journal could not be written: nothing stored; the text says why.
    Failed(String),
}

/// A DM read back from the journal, for the registry.
pub(crate) struct LoadedDm {
    pub record: SpaceRecord,
}

#[derive(Default)]
struct SpaceLog {
    /// The messages still held: consecutive seqs, oldest first, the last one at `head`.
    held: VecDeque<Message>,
    /// The newest seq ever stored (0: none).
    head: u64,
    /// Receipts by key: of every held message, and of the newest dropped ones.
    receipts: HashMap<IdempotencyKey, SendReceipt>,
    /// The keys of `receipts`, oldest first (the order the messages were stored in).
    keys: VecDeque<IdempotencyKey>,
}

impl SpaceLog {
    /// The oldest seq held (`head + 1` when none is).
    fn oldest(&self) -> u64 {
        self.held
            .front()
            .map_or(self.head.saturating_add(1), |m| m.seq)
    }

    /// Adds a message above `head`. A seq that skips some (records lost from a damaged
    /// data file) drops what was held: the missing seqs read as past retention.
    fn push(&mut self, key: IdempotencyKey, message: Message, receipt: SendReceipt) {
        if message.seq != self.head.saturating_add(1) {
            self.held.clear();
        }
        self.head = message.seq;
        self.held.push_back(message);
        self.receipts.insert(key.clone(), receipt);
        self.keys.push_back(key);
    }

    /// Applies the retention window, then forgets the keys of dropped messages past
    /// [`DROPPED_KEYS_REMEMBERED`].
    fn trim(&mut self, retention: Option<usize>) {
        if let Some(keep) = retention {
            while self.held.len() > keep {
                self.held.pop_front();
            }
        }
        while self.keys.len() > self.held.len().saturating_add(DROPPED_KEYS_REMEMBERED) {
            if let Some(key) = self.keys.pop_front() {
                self.receipts.remove(&key);
            }
        }
    }

    /// Index in `held` of the first message with a seq above `seq`.
    fn index_above(&self, seq: u64) -> usize {
        let oldest = self.oldest();
        if seq < oldest {
            return 0;
        }
        usize::try_from(seq - oldest + 1)
            .unwrap_or(usize::MAX)
            .min(self.held.len())
    }

    /// Up to `limit` held messages with a seq above `since`, oldest first.
    fn after(&self, since: u64, limit: usize) -> Vec<Message> {
        self.held
            .iter()
            .skip(self.index_above(since))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest `limit` held messages with a seq below `before` (any when `None`),
    /// oldest first.
    fn before(&self, before: Option<u64>, limit: usize) -> Vec<Message> {
        let end = match before {
            None => self.held.len(),
            Some(0) => 0,
            Some(b) => self.index_above(b - 1),
        };
        let start = end.saturating_sub(limit);
        self.held.range(start..end).cloned().collect()
    }
}

struct StoreInner {
    spaces: HashMap<SpaceId, SpaceLog>,
    /// Messages stored in this epoch (numbers the message ids).
    counter: u64,
    epoch: String,
    retention: Option<usize>,
    journal: Option<Journal>,
}

impl StoreInner {
    /// Replays one journaled message (while loading).
    fn replay_message(&mut self, region: &RegionId, key: IdempotencyKey, message: Message) {
        let retention = self.retention;
        let log = self.spaces.entry(message.space.clone()).or_default();
        if message.seq == 0 || message.seq <= log.head || log.receipts.contains_key(&key) {
            tracing::warn!(
                region = %region, space = %message.space, seq = message.seq,
                "a message record repeats a seq or a key already loaded: skipped"
            );
            return;
        }
        if message.seq != log.head.saturating_add(1) {
            tracing::warn!(
                region = %region, space = %message.space,
                from = log.head.saturating_add(1), to = message.seq - 1,
                "messages are missing from the data file: they read as past retention"
            );
        }
        if let Some(n) = message_number(&message.id) {
            self.counter = self.counter.max(n);
        }
        let receipt = SendReceipt {
            message_id: message.id.clone(),
            seq: message.seq,
            sent_at_ms: message.sent_at_ms,
        };
        log.push(key, message, receipt);
        log.trim(retention);
    }
}

/// The number at the end of a message id (`<region>-<epoch>-<n>`).
fn message_number(id: &MessageId) -> Option<u64> {
    id.as_str().rsplit('-').next()?.parse().ok()
}

/// `bytes` bytes from the platform's secure random source, as hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, DevserverError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| DevserverError::NoRandomSource(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn new_epoch() -> Result<String, DevserverError> {
    random_hex(8)
}

/// One region's messages. Survives the region's restarts (and, with a data directory,
/// the process's).
pub(crate) struct RegionStore {
    region: RegionId,
    inner: std::sync::Mutex<StoreInner>,
    /// The key pair the region was created with (or reloaded): the one journaled, whose
    /// public half the federation document publishes.
    published_key: Arc<KeyPair>,
    /// The key pair the region opens with: the published one unless a test swapped it.
    key: RwLock<Arc<KeyPair>>,
}

impl RegionStore {
    /// An empty store with a fresh epoch, kept in memory only.
    pub fn in_memory(region: RegionId, retention: Option<usize>) -> Result<Self, DevserverError> {
        let key = Arc::new(KeyPair::generate());
        Ok(Self {
            region,
            inner: std::sync::Mutex::new(StoreInner {
                spaces: HashMap::new(),
                counter: 0,
                epoch: new_epoch()?,
                retention,
                journal: None,
            }),
            published_key: key.clone(),
            key: RwLock::new(key),
        })
    }

    /// The store journaled in `dir`: replays the region's file if there is one (its
    /// epoch, spaces, seqs, keys, sealing key pair) and returns the DMs it recorded;
    /// otherwise creates the file with a fresh epoch and a fresh key pair.
    pub fn open(
        region: RegionId,
        retention: Option<usize>,
        dir: &Path,
    ) -> Result<(Self, Vec<LoadedDm>), DevserverError> {
        let path = journal::file_for(dir, &region);
        let (mut journal, records) = Journal::open(&path)?;
        let mut inner = StoreInner {
            spaces: HashMap::new(),
            counter: 0,
            epoch: String::new(),
            retention,
            journal: None,
        };
        let mut dms = Vec::new();
        let mut epoch_seen = false;
        let mut key: Option<KeyPair> = None;
        for record in records {
            match record {
                Record::Epoch { format, epoch } => {
                    if format != FORMAT {
                        return Err(DevserverError::Storage {
                            path: path.display().to_string(),
                            reason: format!(
                                "written in format {format}, this devserver reads format {FORMAT}"
                            ),
                        });
                    }
                    if epoch.is_empty() {
                        tracing::warn!(file = %path.display(), "an empty epoch record: skipped");
                        continue;
                    }
                    // A new history starts here.
                    inner.spaces.clear();
                    inner.counter = 0;
                    inner.epoch = epoch;
                    epoch_seen = true;
                }
                Record::Message { key, message } => {
                    inner.replay_message(&region, key, message);
                }
                Record::SealingKey { private } => match private.key_pair() {
                    Ok(pair) => key = Some(pair),
                    Err(why) => {
                        tracing::warn!(file = %path.display(), problem = why, "a sealing key record is unusable: skipped");
                    }
                },
                Record::Dm {
                    location,
                    participants,
                } => dms.push(LoadedDm {
                    record: SpaceRecord {
                        location,
                        participants: Some(participants),
                    },
                }),
            }
        }
        let storage = |e: std::io::Error| DevserverError::Storage {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let key_known = key.is_some();
        let key = Arc::new(key.unwrap_or_else(KeyPair::generate));
        if !epoch_seen {
            // A new file (or one whose epoch line was lost): a fresh epoch, first.
            inner.epoch = new_epoch()?;
            let mut records = vec![
                Record::Epoch {
                    format: FORMAT,
                    epoch: inner.epoch.clone(),
                },
                Record::SealingKey {
                    private: PrivateKeyHex::of(&key),
                },
            ];
            records.extend(Self::records_of(&inner, &dms));
            journal.rewrite(&records).map_err(storage)?;
        } else if !key_known {
            // A file written before regions had keys, or whose key line was lost.
            journal
                .append(&Record::SealingKey {
                    private: PrivateKeyHex::of(&key),
                })
                .map_err(storage)?;
        }
        tracing::info!(
            region = %region, file = %path.display(), epoch = %inner.epoch,
            spaces = inner.spaces.len(), dms = dms.len(), "region state loaded"
        );
        inner.journal = Some(journal);
        Ok((
            Self {
                region,
                inner: std::sync::Mutex::new(inner),
                published_key: key.clone(),
                key: RwLock::new(key),
            },
            dms,
        ))
    }

    /// Records that reproduce `inner` and `dms`: the DMs and the held messages with their
    /// keys (the remembered keys of dropped messages are not carried over).
    fn records_of(inner: &StoreInner, dms: &[LoadedDm]) -> Vec<Record> {
        let mut records: Vec<Record> = dms
            .iter()
            .filter_map(|dm| {
                Some(Record::Dm {
                    location: dm.record.location.clone(),
                    participants: dm.record.participants.clone()?,
                })
            })
            .collect();
        for log in inner.spaces.values() {
            // The newest keys are the held messages' own, in the same order.
            let skip = log.keys.len().saturating_sub(log.held.len());
            for (key, m) in log.keys.iter().skip(skip).zip(&log.held) {
                records.push(Record::Message {
                    key: key.clone(),
                    message: m.clone(),
                });
            }
        }
        records
    }

    /// The region's sealing key pair.
    pub fn key_pair(&self) -> Arc<KeyPair> {
        self.key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The public half of the key pair the federation document publishes (the one the
    /// region was created with, whatever [`RegionStore::swap_key_pair`] did since).
    pub fn published_key(&self) -> meridian::envelope::SealingKey {
        self.published_key.public().clone()
    }

    /// Replaces the key pair the region opens with, in memory only (a test hook: the
    /// data file and the federation document keep the published one).
    pub fn swap_key_pair(&self, key: KeyPair) {
        *self.key.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }

    /// The region's history epoch.
    pub fn epoch(&self) -> String {
        lock(&self.inner).epoch.clone()
    }

    /// Changes the retention window; it applies at each space's next store.
    pub fn set_retention(&self, retention: Option<usize>) {
        lock(&self.inner).retention = retention;
    }

    /// Stores a message once per (space, key): journaled first (with a data directory),
    /// then held, then the retention window applied.
    pub fn append(&self, req: &SendRequest, sender: &UserId) -> Append {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let log = inner.spaces.entry(req.space.clone()).or_default();
        if let Some(receipt) = log.receipts.get(&req.key) {
            return Append::Duplicate(receipt.clone());
        }
        let counter = inner.counter.saturating_add(1);
        let seq = log.head.saturating_add(1);
        let short_epoch = inner.epoch.get(..8).unwrap_or(&inner.epoch);
        let id = MessageId::new(format!("{}-{short_epoch}-{counter}", self.region))
            .unwrap_or_else(|_| MessageId::new_unchecked(format!("m-{short_epoch}-{counter}")));
        let message = Message {
            space: req.space.clone(),
            seq,
            id: id.clone(),
            sender: sender.clone(),
            body: req.body.clone(),
            sealed: None,
            sent_at_ms: now_ms(),
            trace: req.trace.clone(),
        };
        if let Some(journal) = &mut inner.journal {
            let record = Record::Message {
                key: req.key.clone(),
                message: message.clone(),
            };
            if let Err(e) = journal.append(&record) {
                tracing::error!(
                    region = %self.region, file = %journal.path().display(), error = %e,
                    "could not journal a message: refused"
                );
                return Append::Failed(format!("the region could not store the message: {e}"));
            }
        }
        inner.counter = counter;
        let retention = inner.retention;
        let log = inner.spaces.entry(req.space.clone()).or_default();
        let receipt = SendReceipt {
            message_id: id,
            seq,
            sent_at_ms: message.sent_at_ms,
        };
        log.push(req.key.clone(), message.clone(), receipt.clone());
        log.trim(retention);
        Append::Stored(Box::new(message), receipt)
    }

    /// Journals a DM created in this region (before the registry publishes it).
    pub fn record_dm(&self, record: &SpaceRecord) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        let (Some(journal), Some(participants)) = (&mut inner.journal, &record.participants) else {
            return Ok(());
        };
        journal
            .append(&Record::Dm {
                location: record.location.clone(),
                participants: participants.clone(),
            })
            .map_err(|e| {
                tracing::error!(
                    region = %self.region, file = %journal.path().display(), error = %e,
                    "could not journal a DM: refused"
                );
                format!("the region could not store the DM: {e}")
            })
    }

    /// Forgets every message and key and starts a new epoch (the region "lost its
    /// data"). The journal is rewritten with the new epoch, the region's sealing key pair
    /// (its identity in the federation document, not data) and `dms` (the DMs housed
    /// here, which the directory still knows).
    pub fn wipe(&self, dms: Vec<SpaceRecord>) -> Result<(), DevserverError> {
        let epoch = new_epoch()?;
        let mut inner = lock(&self.inner);
        if let Some(journal) = &mut inner.journal {
            let mut records = vec![
                Record::Epoch {
                    format: FORMAT,
                    epoch: epoch.clone(),
                },
                Record::SealingKey {
                    private: PrivateKeyHex::of(&self.published_key),
                },
            ];
            records.extend(dms.into_iter().filter_map(|record| {
                Some(Record::Dm {
                    location: record.location,
                    participants: record.participants?,
                })
            }));
            journal
                .rewrite(&records)
                .map_err(|e| DevserverError::Storage {
                    path: journal.path().display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        inner.spaces.clear();
        inner.counter = 0;
        tracing::info!(region = %self.region, old = %inner.epoch, new = %epoch, "history wiped");
        inner.epoch = epoch;
        Ok(())
    }

    /// The answer to a join: the head, the oldest seq held, the epoch, and the catch-up
    /// page. `since` counts only in the region's own epoch: a client following another
    /// epoch gets the history from its start.
    pub fn join(&self, req: &JoinRequest, limit: usize) -> JoinReply {
        let inner = lock(&self.inner);
        let empty = SpaceLog::default();
        let log = inner.spaces.get(&req.space).unwrap_or(&empty);
        let since = match (req.since, &req.epoch) {
            (Some(_), Some(theirs)) if *theirs != inner.epoch => Some(0),
            (since, _) => since,
        };
        let oldest = log.oldest();
        let missed = since.map(|s| log.after(s, limit)).unwrap_or_default();
        let complete = match since {
            None => true,
            Some(s) => {
                let reached = missed
                    .last()
                    .map_or(s.max(oldest.saturating_sub(1)), |m| m.seq);
                reached >= log.head
            }
        };
        JoinReply {
            space: req.space.clone(),
            head_seq: log.head,
            missed,
            complete,
            oldest_seq: oldest,
            epoch: inner.epoch.clone(),
        }
    }

    /// The newest `limit` held messages with a seq below `before` (any when `None`),
    /// oldest first.
    pub fn before(&self, space: &SpaceId, before: Option<u64>, limit: usize) -> Vec<Message> {
        lock(&self.inner)
            .spaces
            .get(space)
            .map(|log| log.before(before, limit))
            .unwrap_or_default()
    }

    /// Every held message of a space, oldest first.
    pub fn messages(&self, space: &SpaceId) -> Vec<Message> {
        lock(&self.inner)
            .spaces
            .get(space)
            .map(|log| log.held.iter().cloned().collect())
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
            sealed: None,
            trace: None,
        }
    }

    fn store(retention: Option<usize>) -> RegionStore {
        RegionStore::in_memory(RegionId::new_unchecked("eu-west"), retention).unwrap()
    }

    fn stored(a: Append) -> (Message, SendReceipt) {
        match a {
            Append::Stored(m, r) => (*m, r),
            _ => panic!("expected a store"),
        }
    }

    fn join(store: &RegionStore, since: Option<u64>, epoch: Option<&str>) -> JoinReply {
        store.join(
            &JoinRequest {
                space: SpaceId::new_unchecked("a"),
                since,
                epoch: epoch.map(String::from),
            },
            3,
        )
    }

    fn seqs(v: &[Message]) -> Vec<u64> {
        v.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn seqs_are_gap_free_per_space_and_keys_dedupe() {
        let store = store(None);
        let ana = UserId::new_unchecked("ana");
        let (m1, r1) = stored(store.append(&send("a", "k1"), &ana));
        assert_eq!((m1.seq, r1.seq), (1, 1));
        let Append::Duplicate(again) = store.append(&send("a", "k1"), &ana) else {
            panic!("expected a duplicate")
        };
        assert_eq!(again, r1);
        assert_eq!(stored(store.append(&send("a", "k2"), &ana)).0.seq, 2);
        let (other, _) = stored(store.append(&send("b", "k1"), &ana));
        assert_eq!(other.seq, 1);
        assert_ne!(other.id, m1.id);
        assert_eq!(join(&store, None, None).head_seq, 2);
    }

    #[test]
    fn pages_are_oldest_first_and_bounded() {
        let store = store(None);
        let ana = UserId::new_unchecked("ana");
        for i in 0..10 {
            store.append(&send("a", &format!("k{i}")), &ana);
        }
        let a = SpaceId::new_unchecked("a");
        assert_eq!(seqs(&join(&store, Some(7), None).missed), vec![8, 9, 10]);
        assert_eq!(seqs(&join(&store, Some(2), None).missed), vec![3, 4, 5]);
        assert!(!join(&store, Some(2), None).complete);
        assert!(join(&store, Some(7), None).complete);
        assert!(join(&store, Some(10), None).missed.is_empty());
        assert!(join(&store, Some(u64::MAX), None).complete);
        assert_eq!(seqs(&store.before(&a, None, 3)), vec![8, 9, 10]);
        assert_eq!(seqs(&store.before(&a, Some(4), 10)), vec![1, 2, 3]);
        assert!(store.before(&a, Some(1), 10).is_empty());
        assert!(store.before(&a, Some(0), 10).is_empty());
        assert_eq!(seqs(&store.before(&a, Some(u64::MAX), 2)), vec![9, 10]);
        assert!(store.before(&a, None, 0).is_empty());
    }

    #[test]
    fn retention_keeps_the_newest_messages_and_says_where_history_starts() {
        let store = store(Some(4));
        let ana = UserId::new_unchecked("ana");
        let first = join(&store, Some(0), None);
        assert_eq!(
            (first.head_seq, first.oldest_seq, first.complete),
            (0, 1, true)
        );
        for i in 1..=10 {
            store.append(&send("a", &format!("k{i}")), &ana);
        }
        let a = SpaceId::new_unchecked("a");
        assert_eq!(seqs(&store.messages(&a)), vec![7, 8, 9, 10]);
        let r = join(&store, Some(2), None);
        assert_eq!((r.head_seq, r.oldest_seq), (10, 7));
        assert_eq!(seqs(&r.missed), vec![7, 8, 9]);
        assert!(!r.complete);
        assert!(join(&store, Some(9), None).complete);
        assert_eq!(seqs(&store.before(&a, Some(9), 10)), vec![7, 8]);
        assert!(store.before(&a, Some(7), 10).is_empty());
        // A late retry of a dropped message gets its first receipt.
        let Append::Duplicate(r1) = store.append(&send("a", "k1"), &ana) else {
            panic!("a dropped message's key is still remembered")
        };
        assert_eq!(r1.seq, 1);

        // Nothing held: oldest is head + 1 and a catch-up is complete at once.
        store.set_retention(Some(0));
        store.append(&send("a", "k11"), &ana);
        let r = join(&store, Some(3), None);
        assert_eq!((r.head_seq, r.oldest_seq, r.missed.len()), (11, 12, 0));
        assert!(r.complete);
    }

    #[test]
    fn keys_of_dropped_messages_are_forgotten_past_the_bound() {
        let store = store(Some(1));
        let ana = UserId::new_unchecked("ana");
        let total = DROPPED_KEYS_REMEMBERED + 3;
        for i in 1..=total {
            store.append(&send("a", &format!("k{i}")), &ana);
        }
        // The oldest two dropped keys are forgotten: a retry is a new message.
        let (m, _) = stored(store.append(&send("a", "k1"), &ana));
        assert_eq!(m.seq, total as u64 + 1);
        // Within the bound they are remembered.
        assert!(matches!(
            store.append(&send("a", "k5"), &ana),
            Append::Duplicate(_)
        ));
    }

    #[test]
    fn a_join_in_another_epoch_starts_from_the_beginning_of_this_one() {
        let store = store(None);
        let ana = UserId::new_unchecked("ana");
        for i in 1..=5 {
            store.append(&send("a", &format!("k{i}")), &ana);
        }
        let epoch = store.epoch();
        assert_eq!(epoch.len(), 16);
        let same = join(&store, Some(4), Some(&epoch));
        assert_eq!(
            (seqs(&same.missed), same.epoch.as_str()),
            (vec![5], epoch.as_str())
        );
        let other = join(&store, Some(4), Some("0123456789abcdef"));
        assert_eq!(seqs(&other.missed), vec![1, 2, 3]);
        assert!(!other.complete);
        assert_eq!(other.epoch, epoch);

        store.wipe(Vec::new()).unwrap();
        assert_ne!(store.epoch(), epoch);
        let after = join(&store, Some(5), Some(&epoch));
        assert_eq!(
            (after.head_seq, after.oldest_seq, after.complete),
            (0, 1, true)
        );
        assert!(after.missed.is_empty());
        let (m, _) = stored(store.append(&send("a", "k1"), &ana));
        assert_eq!(m.seq, 1, "a wiped store forgot the keys as well");
    }

    #[test]
    fn a_reload_reads_a_hole_in_the_file_as_past_retention_and_skips_repeats() {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("devserver-store-hole-{tag}"));
        let region = RegionId::new_unchecked("eu-west");
        let (mut j, _) = Journal::open(&journal::file_for(&dir, &region)).unwrap();
        let record = |seq: u64, key: &str| Record::Message {
            key: IdempotencyKey::new_unchecked(key),
            message: Message {
                space: SpaceId::new_unchecked("a"),
                seq,
                id: MessageId::new_unchecked(format!("eu-west-0123abcd-{seq}")),
                sender: UserId::new_unchecked("ana"),
                body: "hi".into(),
                sealed: None,
                sent_at_ms: 1,
                trace: None,
            },
        };
        j.append(&Record::Epoch {
            format: FORMAT,
            epoch: "0123abcd0123abcd".into(),
        })
        .unwrap();
        for r in [
            record(1, "k1"),
            record(3, "k3"),
            record(3, "k3-again"),
            record(2, "k2"),
            record(4, "k1"),
        ] {
            j.append(&r).unwrap();
        }
        drop(j);
        let (store, dms) = RegionStore::open(region, None, &dir).unwrap();
        assert!(dms.is_empty());
        assert_eq!(store.epoch(), "0123abcd0123abcd");
        let r = join(&store, Some(0), Some("0123abcd0123abcd"));
        assert_eq!((r.head_seq, r.oldest_seq), (3, 3));
        assert_eq!(seqs(&r.missed), vec![3]);
        let ana = UserId::new_unchecked("ana");
        // Keys of what was lost from the file are still known where they were read.
        assert!(matches!(
            store.append(&send("a", "k1"), &ana),
            Append::Duplicate(_)
        ));
        let (m, _) = stored(store.append(&send("a", "k5"), &ana));
        assert_eq!(m.seq, 4);
        assert!(m.id.as_str().ends_with("-4"), "ids keep counting: {}", m.id);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_sealing_key_pair_is_journaled_once_and_reloaded_and_a_swap_stays_in_memory() {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("devserver-store-key-{tag}"));
        let region = RegionId::new_unchecked("ca-central");
        let (store, _) = RegionStore::open(region.clone(), None, &dir).unwrap();
        let published = store.published_key();
        assert_eq!(store.key_pair().public(), &published);
        store.swap_key_pair(KeyPair::generate());
        assert_ne!(store.key_pair().public(), &published);
        assert_eq!(
            store.published_key(),
            published,
            "the swap is not published"
        );
        store.wipe(Vec::new()).unwrap();
        drop(store);
        let (store, _) = RegionStore::open(region.clone(), None, &dir).unwrap();
        assert_eq!(store.published_key(), published);
        assert_eq!(store.key_pair().public(), &published);
        let text = std::fs::read_to_string(journal::file_for(&dir, &region)).unwrap();
        assert_eq!(text.matches("sealing_key").count(), 1, "written once");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_data_file_without_a_usable_key_gets_a_new_one_appended() {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("devserver-store-nokey-{tag}"));
        let region = RegionId::new_unchecked("eu-west");
        let path = journal::file_for(&dir, &region);
        std::fs::create_dir_all(&dir).unwrap();
        // An older file: an epoch, a message, and a key record that is not a key.
        std::fs::write(
            &path,
            concat!(
                r#"{"type":"epoch","format":1,"epoch":"e1"}"#,
                "\n",
                r#"{"type":"sealing_key","private":"zz"}"#,
                "\n"
            ),
        )
        .unwrap();
        let (store, _) = RegionStore::open(region.clone(), None, &dir).unwrap();
        let key = store.published_key();
        assert_eq!(store.epoch(), "e1", "the history is kept");
        drop(store);
        let (store, _) = RegionStore::open(region, None, &dir).unwrap();
        assert_eq!(store.published_key(), key);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_data_file_of_a_newer_format_is_refused_not_misread() {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("devserver-store-format-{tag}"));
        let region = RegionId::new_unchecked("eu-west");
        let (mut j, _) = Journal::open(&journal::file_for(&dir, &region)).unwrap();
        j.append(&Record::Epoch {
            format: FORMAT + 1,
            epoch: "e".into(),
        })
        .unwrap();
        drop(j);
        let err = RegionStore::open(region, None, &dir).err().unwrap();
        assert!(err.to_string().contains("format"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
