//! Checking delivery: what clients observed against what regions stored.
//!
//! Owns: recording every event a client emits ([`EventLog`]), and the rules a fault
//! scenario must end with ([`Tally`]): every send stored exactly once and in the order its
//! sender made it; every stored message delivered to every member exactly once, in seq
//! order, or else explicitly reported lost (`ContinuityLost`). Anything else is counted
//! (lost, duplicated, out of order) and described, so a failing scenario says what went
//! wrong, to whom, and where.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use meridian::Event;
use meridian::model::{Message, SpaceId};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Every event one client emitted, in order, recorded by a task of its own.
pub struct EventLog {
    name: String,
    inner: Arc<LogInner>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct LogInner {
    events: Mutex<Vec<Event>>,
    changed: Notify,
}

impl LogInner {
    fn events(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("name", &self.name)
            .field("events", &self.inner.events().len())
            .finish()
    }
}

impl EventLog {
    /// Records `events` (a client's `events()` stream) under `name` until dropped.
    pub fn record(
        name: impl Into<String>,
        mut events: impl Stream<Item = Event> + Send + Unpin + 'static,
    ) -> Self {
        let inner = Arc::new(LogInner::default());
        let sink = inner.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                sink.events().push(event);
                sink.changed.notify_waiters();
            }
        });
        Self {
            name: name.into(),
            inner,
            task,
        }
    }

    /// Whose events these are.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.inner.events().clone()
    }

    /// The messages of `space` received so far, in order.
    pub fn messages(&self, space: &SpaceId) -> Vec<Message> {
        self.inner
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::MessageReceived(m) if &m.space == space => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many events so far satisfy `which`.
    pub fn count(&self, which: impl Fn(&Event) -> bool) -> usize {
        self.inner.events().iter().filter(|e| which(e)).count()
    }

    /// Waits until `condition` holds of the events so far, for at most `timeout`. Returns
    /// whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&[Event]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if condition(&self.inner.events()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return condition(&self.inner.events());
            }
        }
    }

    /// Waits until `timeout` passes with no new event at all (at most `limit` in total).
    /// Returns whether it went quiet.
    pub async fn wait_quiet(&self, timeout: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if Instant::now() >= deadline {
                return false;
            }
            if tokio::time::timeout(timeout, notified).await.is_err() {
                return true;
            }
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A body as problems quote it: the first 40 characters, with its length when longer.
fn short(body: &str) -> String {
    if body.chars().count() <= 40 {
        format!("{body:?}")
    } else {
        let head: String = body.chars().take(40).collect();
        format!("{head:?}... ({} bytes)", body.len())
    }
}

/// One send an app made, in the order its sender made it (bodies are unique in a scenario).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Who sent it.
    pub sender: String,
    /// Where.
    pub space: SpaceId,
    /// What.
    pub body: String,
}

/// The verdict of a scenario: counts, and a description of every violation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Sends the apps made.
    pub sent: u64,
    /// Messages the regions stored (every history of every space checked).
    pub stored: u64,
    /// Messages handed to apps.
    pub delivered: u64,
    /// Silently missing: sends never stored, stored messages neither delivered nor
    /// reported lost.
    pub lost: u64,
    /// Sends stored more than once in one history; messages delivered more than once.
    pub duplicated: u64,
    /// Messages delivered after a later one; a sender's sends stored out of the order made.
    pub out_of_order: u64,
    /// `ContinuityLost` events the apps got.
    pub continuity_events: u64,
    /// Stored messages not delivered but reported by a `ContinuityLost`.
    pub reported_lost: u64,
    /// What went wrong, in words.
    pub problems: Vec<String>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    fn problem(&mut self, text: String) {
        self.problems.push(text);
    }

    /// Checks the sends against what the regions hold: `histories[space]` lists the
    /// space's histories oldest first (one, unless the region lost its data and numbered
    /// afresh). Each send must be in some history of its space, at most once in each, and
    /// each sender's sends must be stored in the order made within each history. Every
    /// history must be numbered 1, 2, 3, ... without gaps.
    pub fn check_sends(&mut self, sent: &[Sent], histories: &BTreeMap<SpaceId, Vec<Vec<Message>>>) {
        self.sent += sent.len() as u64;
        let mut made: HashMap<(&SpaceId, &str), usize> = HashMap::new();
        let mut sender_of: HashMap<(&SpaceId, &str), &str> = HashMap::new();
        let mut per_sender: HashMap<(&str, &SpaceId), usize> = HashMap::new();
        for s in sent {
            let index = per_sender.entry((s.sender.as_str(), &s.space)).or_default();
            made.insert((&s.space, s.body.as_str()), *index);
            sender_of.insert((&s.space, s.body.as_str()), s.sender.as_str());
            *index += 1;
        }
        for (space, epochs) in histories {
            for (e, history) in epochs.iter().enumerate() {
                self.stored += history.len() as u64;
                let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
                if seqs.iter().enumerate().any(|(i, s)| *s != i as u64 + 1) {
                    self.problem(format!(
                        "{space} (history {e}) is not numbered 1, 2, 3, ...: {seqs:?}"
                    ));
                }
                for m in history {
                    if !made.contains_key(&(space, m.body.as_str())) {
                        self.problem(format!(
                            "{space} (history {e}) holds #{} from {} that nobody sent: {}",
                            m.seq,
                            m.sender,
                            short(&m.body)
                        ));
                    }
                }
            }
        }
        for s in sent {
            let epochs = histories.get(&s.space).map(Vec::as_slice).unwrap_or(&[]);
            let mut total = 0;
            for (e, history) in epochs.iter().enumerate() {
                let seqs: Vec<u64> = history
                    .iter()
                    .filter(|m| m.body == s.body)
                    .map(|m| m.seq)
                    .collect();
                total += seqs.len();
                if seqs.len() > 1 {
                    self.duplicated += seqs.len() as u64 - 1;
                    self.problem(format!(
                        "{}'s send {} is stored {} times in {} (history {e}): seqs {seqs:?}",
                        s.sender,
                        short(&s.body),
                        seqs.len(),
                        s.space
                    ));
                }
            }
            if total == 0 {
                self.lost += 1;
                self.problem(format!(
                    "{}'s send {} to {} was never stored",
                    s.sender,
                    short(&s.body),
                    s.space
                ));
            }
        }
        // Each sender's own sends, in the order the region stored them.
        for (space, epochs) in histories {
            for (e, history) in epochs.iter().enumerate() {
                let mut last: HashMap<&str, (usize, u64)> = HashMap::new();
                let mut seen: HashSet<&str> = HashSet::new();
                for m in history {
                    let body = m.body.as_str();
                    let (Some(&index), Some(&sender)) =
                        (made.get(&(space, body)), sender_of.get(&(space, body)))
                    else {
                        continue;
                    };
                    if !seen.insert(body) {
                        continue; // a duplicate, counted above
                    }
                    if let Some(&(before, before_seq)) = last.get(sender)
                        && index < before
                    {
                        self.out_of_order += 1;
                        self.problem(format!(
                            "{sender}'s send #{index} to {space} is stored at seq {} after their send #{before} (seq {before_seq}) (history {e})",
                            m.seq
                        ));
                    }
                    last.insert(sender, (index, m.seq));
                }
            }
        }
    }

    /// Checks a send's outcome: a receipt must name the seq its body is stored at (in
    /// some history of the space); a failure is a problem.
    pub fn check_receipt(
        &mut self,
        sent: &Sent,
        outcome: Result<u64, String>,
        histories: &BTreeMap<SpaceId, Vec<Vec<Message>>>,
    ) {
        match outcome {
            Ok(seq) => {
                let held = histories.get(&sent.space).is_some_and(|epochs| {
                    epochs.iter().any(|h| {
                        seq >= 1 && h.get(seq as usize - 1).is_some_and(|m| m.body == sent.body)
                    })
                });
                if !held {
                    self.problem(format!(
                        "{}'s send {} got a receipt for seq {seq} of {}, which holds something else",
                        sent.sender,
                        short(&sent.body),
                        sent.space
                    ));
                }
            }
            Err(e) => self.problem(format!(
                "{}'s send {} to {} failed: {e}",
                sent.sender,
                short(&sent.body),
                sent.space
            )),
        }
    }

    /// Checks what `receiver` observed of `space` (its events, in order) against the
    /// space's histories (oldest first). The receiver joined when the head was
    /// `joined_at`; it must get every later message of the first history once, in seq
    /// order, and every message of each later history, with one `ContinuityLost` (open
    /// end) between histories; a message it did not get is fine only when a
    /// `ContinuityLost` covered it.
    pub fn check_deliveries(
        &mut self,
        receiver: &str,
        space: &SpaceId,
        joined_at: u64,
        events: &[Event],
        histories: &[Vec<Message>],
    ) {
        let mut epoch = 0usize;
        let mut next = joined_at + 1;
        let mut seen: HashSet<(usize, u64)> = HashSet::new();
        for event in events {
            match event {
                Event::MessageReceived(m) if &m.space == space => {
                    self.delivered += 1;
                    if !seen.insert((epoch, m.seq)) {
                        self.duplicated += 1;
                        self.problem(format!(
                            "{receiver} got {space} #{} ({}) twice",
                            m.seq,
                            short(&m.body)
                        ));
                        continue;
                    }
                    if m.seq < next {
                        self.out_of_order += 1;
                        self.problem(format!(
                            "{receiver} got {space} #{} after #{}",
                            m.seq,
                            next - 1
                        ));
                        continue;
                    }
                    if m.seq > next {
                        self.lost += m.seq - next;
                        self.problem(format!(
                            "{receiver} skipped {space} #{}..=#{} (went on with #{}), with no ContinuityLost",
                            next,
                            m.seq - 1,
                            m.seq
                        ));
                    }
                    match histories.get(epoch).and_then(|h| h.get(m.seq as usize - 1)) {
                        Some(stored) if stored.body == m.body && stored.sender == m.sender => {}
                        Some(stored) => self.problem(format!(
                            "{receiver} got {space} #{} as {} from {}, but the region stored {} from {}",
                            m.seq,
                            short(&m.body),
                            m.sender,
                            short(&stored.body),
                            stored.sender
                        )),
                        None => self.problem(format!(
                            "{receiver} got {space} #{} ({}), which the region does not hold (history {epoch})",
                            m.seq,
                            short(&m.body)
                        )),
                    }
                    next = m.seq + 1;
                }
                Event::ContinuityLost { space: s, from, to } if s == space => {
                    self.continuity_events += 1;
                    if *from != next {
                        self.problem(format!(
                            "{receiver} was told {space} lost from #{from}, but its next was #{next}"
                        ));
                        if *from > next {
                            self.lost += from - next;
                        }
                    }
                    match to {
                        Some(to) => {
                            self.reported_lost += (to + 1).saturating_sub(*from);
                            next = to + 1;
                        }
                        None => {
                            let len = histories.get(epoch).map_or(0, |h| h.len() as u64);
                            self.reported_lost += (len + 1).saturating_sub(*from);
                            epoch += 1;
                            next = 1;
                            if epoch >= histories.len() {
                                self.problem(format!(
                                    "{receiver} was told {space}'s history was reset, but it was not"
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for (e, history) in histories.iter().enumerate().skip(epoch) {
            let start = if e == epoch { next } else { 1 };
            let missing = (history.len() as u64 + 1).saturating_sub(start);
            if missing > 0 {
                self.lost += missing;
                let why = if e > epoch {
                    "a later history it was never told about"
                } else if e + 1 < histories.len() {
                    "then the history was reset without a ContinuityLost"
                } else {
                    "never delivered"
                };
                self.problem(format!(
                    "{receiver} never got {space} #{start}..=#{} of history {e}: {why}",
                    history.len()
                ));
            }
        }
    }

    /// Whether nothing was lost, duplicated or reordered, and nothing else went wrong.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0 && self.problems.is_empty()
    }

    /// `faults[<name>]: sent=.. delivered=.. lost=.. ...` followed by `extra` figures.
    pub fn summary(&self, name: &str, extra: &[(&str, String)]) -> String {
        let mut line = format!(
            "faults[{name}]: sent={} stored={} delivered={} lost={} duplicated={} out_of_order={} continuity_events={}",
            self.sent,
            self.stored,
            self.delivered,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.continuity_events
        );
        if self.reported_lost > 0 {
            line.push_str(&format!(" reported_lost={}", self.reported_lost));
        }
        for (k, v) in extra {
            line.push_str(&format!(" {k}={v}"));
        }
        line
    }

    /// Panics with the summary and every problem (the first 40) unless [`Self::is_clean`].
    pub fn assert_clean(&self, summary: &str) {
        if self.is_clean() {
            return;
        }
        let mut text = format!("{summary}\n{} problem(s):", self.problems.len());
        for p in self.problems.iter().take(40) {
            text.push_str("\n  - ");
            text.push_str(p);
        }
        if self.problems.len() > 40 {
            text.push_str(&format!("\n  ... and {} more", self.problems.len() - 40));
        }
        panic!("{text}");
    }
}

/// One history per space: the usual case, where no region lost its data.
pub fn single_histories(
    stored: impl IntoIterator<Item = (SpaceId, Vec<Message>)>,
) -> BTreeMap<SpaceId, Vec<Vec<Message>>> {
    stored.into_iter().map(|(s, h)| (s, vec![h])).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn space() -> SpaceId {
        SpaceId::new("acme:general").unwrap()
    }

    fn msg(seq: u64, sender: &str, body: &str) -> Message {
        // Through JSON, as a region sends it: fields added later keep their defaults.
        serde_json::from_value(serde_json::json!({
            "space": space(), "seq": seq, "id": format!("m{seq}"), "sender": sender,
            "body": body, "sent_at_ms": 0
        }))
        .unwrap()
    }

    fn sent(sender: &str, body: &str) -> Sent {
        Sent {
            sender: sender.into(),
            space: space(),
            body: body.into(),
        }
    }

    fn got(m: &Message) -> Event {
        Event::MessageReceived(m.clone())
    }

    #[test]
    fn a_clean_run_is_clean() {
        let stored = vec![
            msg(1, "ana", "a1"),
            msg(2, "sam", "s1"),
            msg(3, "ana", "a2"),
        ];
        let histories = single_histories([(space(), stored.clone())]);
        let mut t = Tally::new();
        t.check_sends(
            &[sent("ana", "a1"), sent("ana", "a2"), sent("sam", "s1")],
            &histories,
        );
        let events: Vec<Event> = stored.iter().map(got).collect();
        t.check_deliveries("ben", &space(), 0, &events, &histories[&space()]);
        t.check_receipt(&sent("ana", "a2"), Ok(3), &histories);
        assert!(t.is_clean(), "{t:?}");
        assert_eq!((t.sent, t.stored, t.delivered), (3, 3, 3));
    }

    #[test]
    fn lost_duplicated_and_reordered_sends_are_counted() {
        let stored = vec![
            msg(1, "ana", "a2"),
            msg(2, "ana", "a1"),
            msg(3, "ana", "a1"),
        ];
        let histories = single_histories([(space(), stored)]);
        let mut t = Tally::new();
        t.check_sends(
            &[sent("ana", "a1"), sent("ana", "a2"), sent("ana", "a3")],
            &histories,
        );
        assert_eq!((t.lost, t.duplicated, t.out_of_order), (1, 1, 1), "{t:?}");
        t.check_receipt(&sent("ana", "a2"), Ok(2), &histories);
        assert_eq!(t.problems.len(), 4, "{:?}", t.problems);
    }

    #[test]
    fn deliveries_that_skip_repeat_or_go_back_are_counted() {
        let stored: Vec<Message> = (1..=5).map(|i| msg(i, "ana", &format!("a{i}"))).collect();
        let events: Vec<Event> = [1, 3, 3, 2, 4]
            .iter()
            .map(|&i| got(&stored[i - 1]))
            .collect();
        let mut t = Tally::new();
        t.check_deliveries("ben", &space(), 0, &events, &[stored]);
        // #2 skipped (then seen late: out of order), #3 twice, #5 never.
        assert_eq!((t.lost, t.duplicated, t.out_of_order), (2, 1, 1), "{t:?}");
        assert_eq!(t.delivered, 5);
    }

    #[test]
    fn a_reset_history_reported_by_continuity_lost_is_not_silent_loss() {
        let old: Vec<Message> = (1..=4).map(|i| msg(i, "ana", &format!("old{i}"))).collect();
        let new: Vec<Message> = (1..=2).map(|i| msg(i, "ana", &format!("new{i}"))).collect();
        let lost = Event::ContinuityLost {
            space: space(),
            from: 3,
            to: None,
        };
        let events = vec![got(&old[0]), got(&old[1]), lost, got(&new[0]), got(&new[1])];
        let mut t = Tally::new();
        t.check_deliveries("ben", &space(), 0, &events, &[old.clone(), new.clone()]);
        assert!(t.is_clean(), "{t:?}");
        assert_eq!((t.continuity_events, t.reported_lost), (1, 2));

        // Without the event, the same observations are silent loss.
        let events = vec![got(&old[0]), got(&old[1])];
        let mut t = Tally::new();
        t.check_deliveries("ben", &space(), 0, &events, &[old, new]);
        assert_eq!(t.lost, 4, "{t:?}");
    }
}
