//! The invariants: what each client's app saw, per space, checked against the region's
//! ledger; and the counters every run reports.

use std::collections::BTreeSet;
use std::fmt;

use meridian::model::SpaceId;

use super::region::Ledger;

/// What a run counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Sends the apps made.
    pub sent: u64,
    /// Messages the sessions delivered to the apps (re-deliveries after a client restart
    /// from a lagging cursor included).
    pub delivered: u64,
    /// Messages stored but never delivered to a subscribed client nor covered by a
    /// continuity event, plus sends never stored.
    pub lost: u64,
    /// Messages delivered twice to one app, plus sends stored twice in one epoch.
    pub duplicated: u64,
    /// Messages delivered out of seq order, plus sends stored out of the order made.
    pub out_of_order: u64,
    /// `ContinuityLost` events.
    pub continuity_events: u64,
    /// Other breaches of the state machines' contract (a request answered twice, a timer
    /// that never stops firing, a send refused for good, a continuity event with no cause...).
    pub contract: u64,
    /// Times a session went to `Reconnecting`.
    pub reconnects: u64,
    /// Region restarts, and how many of them lost the region's state.
    pub server_restarts: u64,
    /// Region restarts without state.
    pub wipes: u64,
    /// Client restarts.
    pub client_restarts: u64,
    /// Frames written by either side.
    pub frames: u64,
    /// Frames the network lost.
    pub frames_lost: u64,
    /// `Problem` events (protocol errors the sessions reported, e.g. a duplicated handshake).
    pub problems: u64,
    /// Sends handed back to the outbox unsettled and submitted again.
    pub resubmits: u64,
    /// Times a session's `poll_timeout()` was still in the past right after
    /// `handle_timeout()`: a timer that would fire again at once (a busy loop).
    pub timer_spins: u64,
    /// Simulated time, in ms.
    pub sim_ms: u64,
    /// The longest time from the end of the faults to quiescence, in ms.
    pub heal_ms_max: u64,
    /// Sends the region recognised by their key and answered with the first receipt.
    pub dedup_hits: u64,
    /// Messages delivered again after a client restart, from a cursor that lagged.
    pub redelivered: u64,
    /// Sends submitted in a `message:send_batch` of more than one.
    pub batched: u64,
}

impl Stats {
    /// Adds `o` to these counters.
    pub fn add(&mut self, o: &Stats) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.continuity_events += o.continuity_events;
        self.contract += o.contract;
        self.reconnects += o.reconnects;
        self.server_restarts += o.server_restarts;
        self.wipes += o.wipes;
        self.client_restarts += o.client_restarts;
        self.frames += o.frames;
        self.frames_lost += o.frames_lost;
        self.problems += o.problems;
        self.resubmits += o.resubmits;
        self.timer_spins += o.timer_spins;
        self.sim_ms += o.sim_ms;
        self.heal_ms_max = self.heal_ms_max.max(o.heal_ms_max);
        self.dedup_hits += o.dedup_hits;
        self.redelivered += o.redelivered;
        self.batched += o.batched;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} delivered={} lost={} duplicated={} out_of_order={} continuity_events={} \
             contract_violations={} | reconnects={} server_restarts={} (without state: {}) \
             client_restarts={} frames={} frames_lost={} problems={} resubmits={} dedup_hits={} redelivered_after_restart={} batched={} timer_spins={} \
             sim_time={}s heal_max={}ms",
            self.sent,
            self.delivered,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.continuity_events,
            self.contract,
            self.reconnects,
            self.server_restarts,
            self.wipes,
            self.client_restarts,
            self.frames,
            self.frames_lost,
            self.problems,
            self.resubmits,
            self.dedup_hits,
            self.redelivered,
            self.batched,
            self.timer_spins,
            self.sim_ms / 1000,
            self.heal_ms_max,
        )
    }
}

/// Which invariant an anomaly breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something stored never reached a subscribed app (or a send was never stored).
    Lost,
    /// Something reached an app twice (or was stored twice).
    Duplicated,
    /// Something arrived out of order (or was stored out of order).
    OutOfOrder,
    /// Another breach of the state machines' contract.
    Contract,
}

/// The outcome of one run.
#[derive(Debug, Default)]
pub struct Report {
    /// The counters.
    pub stats: Stats,
    /// What went wrong, readable (the first few).
    pub failures: Vec<String>,
}

impl Report {
    /// Records `count` anomalies of `kind`.
    pub fn fail(&mut self, kind: Kind, count: u64, what: String) {
        match kind {
            Kind::Lost => self.stats.lost += count,
            Kind::Duplicated => self.stats.duplicated += count,
            Kind::OutOfOrder => self.stats.out_of_order += count,
            Kind::Contract => self.stats.contract += count,
        }
        if self.failures.len() < 40 {
            self.failures.push(format!("[{kind:?}] {what}"));
        }
    }

    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Where an app stands in one space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pos {
    /// Joining: nothing delivered or answered yet (also after a restart that persisted
    /// nothing of the space).
    NotStarted,
    /// The last seq delivered (or skipped by a continuity event) in `epoch`.
    At {
        /// The region's history epoch.
        epoch: u32,
        /// The seq.
        seq: u64,
    },
    /// The session reported that the region lost the history of `from_epoch`; the next
    /// message starts a newer epoch at seq 1.
    Reset {
        /// The epoch that was lost.
        from_epoch: u32,
    },
    /// The app left the space.
    Left,
}

/// One stretch of one epoch during which an app was subscribed to a space.
#[derive(Debug, Clone, Default)]
pub struct Segment {
    /// The region's history epoch.
    pub epoch: u32,
    /// The seq it started after (the head when it joined, 0 in a new epoch).
    pub start: u64,
    /// Where it ended when the app left (the last seq delivered then); open otherwise.
    pub end: Option<u64>,
    /// The seqs delivered.
    pub delivered: BTreeSet<u64>,
    /// Ranges reported lost: `(from, Some(to))` past retention, `(from, None)` history reset.
    pub covered: Vec<(u64, Option<u64>)>,
}

impl Segment {
    fn covers(&self, seq: u64) -> bool {
        self.covered
            .iter()
            .any(|(from, to)| seq >= *from && to.is_none_or(|t| seq <= t))
    }
}

/// What one app saw of one space: the position and every segment. An app persists a copy
/// with its cursor, and rolls back to that copy when it restarts.
#[derive(Debug, Clone)]
pub struct Track {
    /// Where it stands.
    pub pos: Pos,
    /// Oldest first; the last one is the current one unless `pos` is `Reset` or `Left`.
    pub segments: Vec<Segment>,
    /// The input ("batch") in which delivery started without a join answer yet.
    inferred_in: Option<u64>,
}

impl Default for Track {
    fn default() -> Self {
        Self {
            pos: Pos::NotStarted,
            segments: Vec::new(),
            inferred_in: None,
        }
    }
}

type Anomaly = (Kind, String);

impl Track {
    fn start(&mut self, epoch: u32, after: u64) {
        self.segments.push(Segment {
            epoch,
            start: after,
            ..Segment::default()
        });
        self.pos = Pos::At { epoch, seq: after };
    }

    fn current(&mut self, epoch: u32) -> Option<&mut Segment> {
        self.segments.last_mut().filter(|s| s.epoch == epoch)
    }

    /// The session delivered seq `seq` of `epoch`, while handling input number `batch`.
    pub fn deliver(&mut self, epoch: u32, seq: u64, batch: u64) -> Option<Anomaly> {
        let mut anomaly = None;
        match self.pos {
            Pos::Left => {
                return Some((
                    Kind::Contract,
                    format!("seq {seq} (epoch {epoch}) delivered after the app left the space"),
                ));
            }
            Pos::NotStarted => {
                self.start(epoch, seq.saturating_sub(1));
                self.inferred_in = Some(batch);
            }
            Pos::Reset { from_epoch } => {
                if epoch <= from_epoch {
                    anomaly = Some((
                        Kind::OutOfOrder,
                        format!(
                            "seq {seq} of epoch {epoch} after the history of epoch {from_epoch} was reported lost"
                        ),
                    ));
                } else if seq != 1 {
                    anomaly = Some((
                        Kind::OutOfOrder,
                        format!("first message after a history reset is seq {seq}, not 1"),
                    ));
                }
                self.start(epoch, 0);
            }
            Pos::At {
                epoch: e,
                seq: last,
            } => {
                if epoch < e {
                    return Some((
                        Kind::OutOfOrder,
                        format!(
                            "seq {seq} of epoch {epoch} after seq {last} of the newer epoch {e}"
                        ),
                    ));
                } else if epoch > e {
                    anomaly = Some((
                        Kind::OutOfOrder,
                        format!(
                            "epoch changed from {e} (at seq {last}) to {epoch} (seq {seq}) without a ContinuityLost"
                        ),
                    ));
                    self.start(epoch, 0);
                } else if self
                    .current(epoch)
                    .is_some_and(|s| s.delivered.contains(&seq))
                {
                    return Some((
                        Kind::Duplicated,
                        format!("seq {seq} (epoch {epoch}) delivered again"),
                    ));
                } else if seq != last + 1 {
                    anomaly = Some((
                        Kind::OutOfOrder,
                        format!("seq {seq} (epoch {epoch}) delivered right after seq {last}"),
                    ));
                }
            }
        }
        if let Some(seg) = self.current(epoch) {
            seg.delivered.insert(seq);
        }
        if let Pos::At {
            epoch: e,
            seq: last,
        } = self.pos
            && e == epoch
        {
            self.pos = Pos::At {
                epoch,
                seq: last.max(seq),
            };
        }
        anomaly
    }

    /// The session reported `ContinuityLost { from, to }`.
    pub fn continuity(&mut self, from: u64, to: Option<u64>) -> Option<Anomaly> {
        match self.pos {
            Pos::NotStarted | Pos::Left => Some((
                Kind::Contract,
                format!(
                    "ContinuityLost {{ from: {from}, to: {to:?} }} while not joined ({:?})",
                    self.pos
                ),
            )),
            Pos::Reset { from_epoch } => {
                // The new epoch had nothing yet and was lost too: nothing more is skipped.
                (from != 1 || to.is_some()).then(|| {
                    (
                        Kind::Contract,
                        format!("ContinuityLost {{ from: {from}, to: {to:?} }} right after the history of epoch {from_epoch} was reported lost"),
                    )
                })
            }
            Pos::At { epoch, seq } => {
                let anomaly = (from != seq + 1 || to.is_some_and(|t| t < from)).then(|| {
                    (
                        Kind::Contract,
                        format!("ContinuityLost {{ from: {from}, to: {to:?} }} but the last seq delivered was {seq} (epoch {epoch})"),
                    )
                });
                if let Some(seg) = self.current(epoch) {
                    seg.covered.push((from, to));
                }
                self.pos = match to {
                    Some(t) => Pos::At {
                        epoch,
                        seq: seq.max(t),
                    },
                    None => Pos::Reset { from_epoch: epoch },
                };
                anomaly
            }
        }
    }

    /// The app's `Join` was answered with `head`; the session's cursor says `epoch`.
    pub fn joined(&mut self, epoch: u32, head: u64, batch: u64) -> Option<Anomaly> {
        match self.pos {
            Pos::NotStarted => {
                self.start(epoch, head);
                None
            }
            Pos::At { epoch: e, .. } if self.inferred_in == Some(batch) && e == epoch => {
                // Delivery began in the same input as this answer. A join that resumed from
                // a cursor delivers from there (at or below the head); none may start above
                // `head + 1`: what lies between was skipped.
                self.inferred_in = None;
                let seg = self.current(epoch)?;
                if seg.start <= head {
                    return None;
                }
                let first = seg.start + 1;
                seg.start = head;
                Some((
                    Kind::OutOfOrder,
                    format!("the join answered head {head}, but delivery started at seq {first}"),
                ))
            }
            _ => None,
        }
    }

    /// The app leaves the space: what comes after is not owed to it.
    pub fn leave(&mut self) {
        if let Pos::At { epoch, seq } = self.pos
            && let Some(seg) = self.current(epoch)
        {
            seg.end = Some(seq);
        }
        self.pos = Pos::Left;
        self.inferred_in = None;
    }

    /// The app joins the space again.
    pub fn rejoin(&mut self) {
        if self.pos == Pos::Left {
            self.pos = Pos::NotStarted;
        }
    }

    /// At the end of a run: a history reset owes the app the region's current epoch from
    /// its first seq, even if nothing of it arrived.
    pub fn settle(&mut self, epoch: u32) {
        if let Pos::Reset { from_epoch } = self.pos
            && from_epoch < epoch
        {
            self.start(epoch, 0);
        }
    }

    /// Compares with the session's cursor `(epoch, last_seq)`, as the app persists it.
    pub fn reconcile(&mut self, cursor: Option<(u32, u64)>) -> Option<Anomaly> {
        match (self.pos, cursor) {
            (Pos::NotStarted | Pos::Left, None) => None,
            // The join was answered but the app's Join request had already given up: the
            // cursor is where the app's history of the space starts.
            (Pos::NotStarted, Some((e, s))) => {
                self.start(e, s);
                None
            }
            (Pos::At { epoch, seq }, Some((e, s))) if e == epoch && s == seq => None,
            (Pos::Reset { from_epoch }, Some((e, 0))) if e > from_epoch => {
                self.start(e, 0);
                None
            }
            (pos, cursor) => Some((
                Kind::Contract,
                format!(
                    "the session's cursor (epoch, last_seq) = {cursor:?} disagrees with what it delivered: {pos:?}"
                ),
            )),
        }
    }
}

/// Checks one app's final view of `space`: every stored message of every stretch it was
/// subscribed is delivered or covered by a continuity event, and every continuity event
/// had a cause.
pub fn verify_track(
    report: &mut Report,
    who: &str,
    space: &SpaceId,
    track: &Track,
    ledger: &Ledger,
    final_epoch: u32,
) {
    for seg in &track.segments {
        let epoch = seg.epoch;
        let end = seg.end.unwrap_or_else(|| ledger.head(epoch, space));
        let missing: Vec<u64> = (seg.start + 1..=end)
            .filter(|s| !seg.delivered.contains(s) && !seg.covers(*s))
            .collect();
        if !missing.is_empty() {
            report.fail(
                Kind::Lost,
                missing.len() as u64,
                format!(
                    "{who} {space} epoch {epoch}: stored but neither delivered nor covered by a ContinuityLost: seqs {} (joined after {}, up to {end})",
                    short(&missing),
                    seg.start
                ),
            );
        }
        for &(from, to) in &seg.covered {
            match to {
                Some(to) => {
                    let held: Vec<u64> = (from..=to)
                        .filter(|s| ledger.held(epoch, space, *s))
                        .collect();
                    if !held.is_empty() {
                        report.fail(
                            Kind::Contract,
                            1,
                            format!(
                                "{who} {space} epoch {epoch}: ContinuityLost {{ from: {from}, to: {to} }} but the region still holds seqs {}",
                                short(&held)
                            ),
                        );
                    }
                }
                None if epoch == final_epoch => report.fail(
                    Kind::Contract,
                    1,
                    format!(
                        "{who} {space}: ContinuityLost {{ from: {from}, to: None }} but the region never lost epoch {epoch}"
                    ),
                ),
                None => {}
            }
        }
    }
}

/// A list of seqs, shortened.
pub fn short(seqs: &[u64]) -> String {
    if seqs.len() <= 12 {
        format!("{seqs:?}")
    } else {
        format!(
            "{:?}...{:?} ({} in all)",
            &seqs[..6],
            &seqs[seqs.len() - 3..],
            seqs.len()
        )
    }
}
