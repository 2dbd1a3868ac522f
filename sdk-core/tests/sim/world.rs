//! The world: a region, a few clients, a fake network and a fake clock, all driven by one
//! discrete-event loop from one seed.
//!
//! The story of a run: every client starts, joins every space and sends its messages at
//! random moments of the chaos phase, while the network delays, duplicates, reorders and
//! loses frames (a lost frame breaks its connection, as TCP would: reset now, or half-open),
//! connections are reset, the region restarts (with its state, or without it), clients
//! crash and restart from what they persisted or freeze for a while, apps leave spaces and
//! join them again, and devices go offline or switch networks.
//! Then the faults stop (the heal phase) and the run goes on until it is quiescent: every
//! outbox empty, every app caught up with the region's head of every space. The checks
//! then compare what each app saw with what the region stored.

use std::collections::{BTreeMap, BTreeSet};

use meridian::model::SendReceipt;
use meridian::model::{IdempotencyKey, Message, MessageId, RegionId, SpaceId, UserId};
use meridian::outbox::{Outbox, OutboxEntry, Settled};
use meridian::protocol::MAX_BATCH;
use meridian::session::{
    ConnectionState, Cursor, Output, RegionSession, Request, Response, SessionEvent,
};
use meridian::time::Instant;

use super::check::{self, Kind, Pos, Report, Track};
use super::client::{Client, Pending, Saved};
use super::net::{Conn, Dir, NetId, Queue, Wire};
use super::plan::{Fault, Mix, Pick, Plan, Stop, Tamper, session_config};
use super::region::{Region, RegionOut, epoch_number};

const REGION: &str = "sim-1";
const URL: &str = "ws://sim-1.invalid";

macro_rules! trace {
    ($w:expr, $($arg:tt)*) => {
        if $w.tracing {
            eprintln!("{:>8} ms  {}", $w.now, format_args!($($arg)*));
        }
    };
}

#[derive(Debug)]
enum Ev {
    /// A connection attempt reaches the region.
    Accept(NetId),
    /// Something arrives at the region's end of a connection.
    ToServer(NetId, Wire),
    /// Something arrives at the client's end of a connection.
    ToClient(NetId, Wire),
    /// The region pings a socket.
    Ping(NetId),
    /// The region checks that a ping was answered.
    PongCheck(NetId, u64),
    /// The app of a client sends a message to a space.
    AppSend(usize, usize),
    /// The app (incarnation) of a client joins a space again after its join failed.
    AppJoin(usize, u32, usize),
    /// The app of a client leaves a space, to join it again after some ms.
    AppLeave(usize, usize, u64),
    /// The app of a client joins a space it left.
    AppRejoin(usize, usize),
    /// The app of a client persists its cursors.
    Save(usize),
    /// The store deletes a delivered outbox entry (a write that lags).
    PersistDelete(usize, u32, u64),
    Fault(Fault),
    /// A frozen client process runs again (incarnation).
    Resume(usize, u32),
    /// Faults stop.
    Heal,
    /// Is it over?
    Probe,
}

/// Runs one seed of `mix`; `tracing` prints every event to stderr.
pub fn run(seed: u64, mix: &Mix, tracing: bool) -> Report {
    let plan = Plan::draw(seed, mix);
    let mut world = World::new(seed, mix, plan, tracing);
    world.start();
    world.run();
    world.finish()
}

struct World {
    seed: u64,
    plan: Plan,
    now: u64,
    queue: Queue<Ev>,
    rng: fastrand::Rng,
    chaos: bool,
    region: Region,
    conns: BTreeMap<NetId, Conn>,
    next_net: NetId,
    clients: Vec<Client>,
    spaces: Vec<SpaceId>,
    report: Report,
    tracing: bool,
    done: bool,
    tamper: Option<Tamper>,
    /// Message events a tampering session already swallowed, as (client, message id).
    tampered: BTreeSet<(usize, MessageId)>,
    sends_made: usize,
    spin_reported: bool,
}

impl World {
    fn new(seed: u64, mix: &Mix, plan: Plan, tracing: bool) -> Self {
        let spaces: Vec<SpaceId> = (0..plan.spaces)
            .map(|s| SpaceId::new_unchecked(format!("sim:s{s}")))
            .collect();
        let clients: Vec<Client> = (0..plan.clients).map(|c| Client::new(c, &spaces)).collect();
        let tokens = (0..plan.clients)
            .map(|c| (format!("tok-c{c}"), UserId::new_unchecked(format!("u{c}"))))
            .collect();
        let region = Region::new(&spaces, tokens, plan.retention, mix.bug);
        Self {
            seed,
            now: 0,
            queue: Queue::new(),
            rng: fastrand::Rng::with_seed(seed ^ 0x005e_ed0f_fa17),
            chaos: true,
            region,
            conns: BTreeMap::new(),
            next_net: 0,
            clients,
            spaces,
            report: Report::default(),
            tracing,
            done: false,
            tamper: mix.tamper,
            tampered: BTreeSet::new(),
            sends_made: 0,
            spin_reported: false,
            plan,
        }
    }

    fn start(&mut self) {
        trace!(self, "seed {} mix plan: {:?}", self.seed, self.plan);
        for (at, fault) in self.plan.script.clone() {
            self.queue.push(at, Ev::Fault(fault));
        }
        for c in 0..self.plan.clients {
            for s in 0..self.plan.spaces {
                for _ in 0..self.plan.sends {
                    let at = self.rng.u64(200..self.plan.chaos_ms - 2_000);
                    self.queue.push(at, Ev::AppSend(c, s));
                }
            }
            let at = self.rng.u64(300..3_000);
            self.queue.push(at, Ev::Save(c));
            self.boot(c);
        }
        for (at, c, s, away) in self.plan.leaves.clone() {
            self.queue.push(at, Ev::AppLeave(c, s, away));
        }
        self.queue.push(self.plan.chaos_ms, Ev::Heal);
    }

    fn run(&mut self) {
        // Quiescence comes within 5 s of the end of the faults in every seed seen so far.
        let cap = self.plan.chaos_ms + 30_000;
        let mut steps: u64 = 0;
        while !self.done {
            steps += 1;
            if steps > 2_000_000 {
                self.report.fail(
                    Kind::Contract,
                    1,
                    format!("runaway: 2M steps by {} ms of simulated time", self.now),
                );
                return;
            }
            let event_at = self.queue.peek_time();
            let timer = self.next_timer();
            let (at, timer) = match (event_at, timer) {
                (Some(e), Some((t, c))) if t < e => (t, Some(c)),
                (Some(e), _) => (e, None),
                (None, Some((t, c))) => (t, Some(c)),
                (None, None) => return,
            };
            if at > cap {
                self.stuck(cap);
                return;
            }
            self.now = self.now.max(at);
            match timer {
                Some(c) => self.client_timeout(c),
                None => {
                    if let Some((_, ev)) = self.queue.pop() {
                        self.handle(ev);
                    }
                }
            }
        }
    }

    fn next_timer(&self) -> Option<(u64, usize)> {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.up)
            .filter_map(|(i, c)| Some((c.deadline?.max(c.wake_floor).max(c.suspended_until), i)))
            .min()
    }

    fn at(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn handle(&mut self, ev: Ev) {
        if let Some(c) = self.frozen(&ev) {
            // The process is frozen: whatever it would do waits until it runs again.
            let at = self.clients[c].suspended_until;
            self.queue.push(at, ev);
            return;
        }
        match ev {
            Ev::Accept(net) => self.accept(net),
            Ev::ToServer(net, wire) => self.arrive_at_region(net, wire),
            Ev::ToClient(net, wire) => self.arrive_at_client(net, wire),
            Ev::Ping(net) => {
                let outs = self.region.ping(net, self.now);
                self.apply(outs);
            }
            Ev::PongCheck(net, ping) => {
                let outs = self.region.pong_check(net, ping);
                if !outs.is_empty() {
                    trace!(self, "region: no pong on n{net}: drops the socket");
                }
                self.apply(outs);
            }
            Ev::AppSend(c, s) => {
                let space = self.spaces[s].clone();
                if self.clients[c].up && !self.clients[c].left.contains(&space) {
                    self.make_send(c, s);
                } else {
                    // Made when the app runs again, or when it is back in the space.
                    self.clients[c].deferred.push(space);
                }
            }
            Ev::AppLeave(c, s, away) => self.app_leave(c, s, away),
            Ev::AppRejoin(c, s) => {
                let space = self.spaces[s].clone();
                let leaving = self.clients[c]
                    .pending
                    .values()
                    .any(|p| matches!(p, Pending::Leave(x) if *x == space));
                if leaving && !self.plan.eager_rejoin {
                    // The app waits for the leave's answer before it joins again.
                    self.queue.push(self.now + 200, Ev::AppRejoin(c, s));
                    return;
                }
                trace!(self, "c{c} app joins {space} again");
                self.clients[c].left.remove(&space);
                if self.clients[c].up {
                    self.app_join(c, s);
                    self.flush_deferred(c);
                    self.pump(c);
                }
            }
            Ev::AppJoin(c, inc, s) => {
                let client = &self.clients[c];
                if client.up && client.inc == inc && !client.left.contains(&self.spaces[s]) {
                    self.app_join(c, s);
                    self.pump(c);
                }
            }
            Ev::Save(c) => {
                if self.clients[c].up {
                    self.save(c);
                }
                let next = self.now + self.rng.u64(300..3_000);
                self.queue.push(next, Ev::Save(c));
            }
            Ev::PersistDelete(c, inc, order) => {
                if self.clients[c].inc == inc {
                    self.clients[c].persisted.remove(&order);
                }
            }
            Ev::Fault(f) => self.fault(f),
            Ev::Resume(c, inc) => {
                if self.clients[c].up && self.clients[c].inc == inc {
                    trace!(self, "c{c}#{inc} runs again");
                    // Its overdue timer and its queued input are both ready: either first.
                    if self.rng.bool() {
                        self.client_timeout(c);
                    }
                }
            }
            Ev::Heal => {
                trace!(self, "HEAL: no more faults");
                self.chaos = false;
                self.queue.push(self.now, Ev::Probe);
            }
            Ev::Probe => {
                if self.quiescent() {
                    trace!(self, "quiescent");
                    self.report.stats.heal_ms_max = self.now - self.plan.chaos_ms;
                    self.done = true;
                } else {
                    self.queue.push(self.now + 200, Ev::Probe);
                }
            }
        }
    }

    /// The client a frozen process would handle `ev` in, if any.
    fn frozen(&self, ev: &Ev) -> Option<usize> {
        let c = match ev {
            Ev::ToClient(net, _) => self.conns.get(net)?.client,
            Ev::AppSend(c, _)
            | Ev::AppJoin(c, ..)
            | Ev::AppLeave(c, ..)
            | Ev::AppRejoin(c, _)
            | Ev::Save(c)
            | Ev::PersistDelete(c, ..) => *c,
            Ev::Fault(
                Fault::Offline { client, .. }
                | Fault::Online { client }
                | Fault::Switch { client }
                | Fault::Suspend { client, .. },
            ) => *client,
            _ => return None,
        };
        let client = &self.clients[c];
        (client.up && self.now < client.suspended_until).then_some(c)
    }

    // ----- the network -----

    fn latency(&mut self) -> u64 {
        self.plan.latency + self.rng.u64(0..=self.plan.jitter)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    /// Puts `wire` on the `dir` link of `net`, with the faults of the chaos phase.
    fn send(&mut self, net: NetId, dir: Dir, wire: Wire) {
        let is_frame = matches!(wire, Wire::Frame(_));
        if is_frame {
            self.report.stats.frames += 1;
        }
        let faulty = self.chaos && is_frame;
        let drop = faulty && self.chance(self.plan.p_drop);
        let drop_kind = self.rng.pick(0..3);
        let spike = (faulty && self.chance(self.plan.p_delay)).then(|| self.rng.u64(100..=1_500));
        let reorder = (faulty && self.chance(self.plan.p_reorder)).then(|| self.rng.u64(1..=300));
        // Duplicates only from the region: TCP never duplicates, a server adapter may emit
        // twice. (A client's repeated request is its own resend, which drops model.)
        let dup = (faulty && dir == Dir::Down && self.chance(self.plan.p_dup))
            .then(|| self.rng.u64(0..=300));
        let latency = self.latency();
        let now = self.now;
        let Some(conn) = self.conns.get_mut(&net) else {
            return;
        };
        let link = conn.link(dir);
        if !link.alive {
            if is_frame {
                self.report.stats.frames_lost += 1;
            }
            return;
        }
        if drop {
            self.report.stats.frames_lost += 1;
            match drop_kind {
                0 => {
                    trace!(
                        self,
                        "FAULT n{net} {dir:?}: frame lost, the connection resets"
                    );
                    self.reset(net);
                }
                1 => {
                    link.alive = false;
                    trace!(
                        self,
                        "FAULT n{net} {dir:?}: frame lost, that direction is now silent (half-open)"
                    );
                }
                _ => {
                    conn.up.alive = false;
                    conn.down.alive = false;
                    trace!(
                        self,
                        "FAULT n{net} {dir:?}: frame lost, both directions are now silent"
                    );
                }
            }
            return;
        }
        let in_order = (now + latency + spike.unwrap_or(0)).max(link.tail);
        let at = match reorder {
            // Sent now, but later frames overtake it.
            Some(extra) => in_order + extra,
            None => {
                link.tail = in_order;
                in_order
            }
        };
        if let Some(extra) = spike {
            trace!(self, "FAULT n{net} {dir:?}: delayed by {extra} ms");
        }
        if let Some(extra) = reorder {
            trace!(
                self,
                "FAULT n{net} {dir:?}: held back {extra} ms (reordered)"
            );
        }
        let event = |wire| match dir {
            Dir::Up => Ev::ToServer(net, wire),
            Dir::Down => Ev::ToClient(net, wire),
        };
        if let Some(extra) = dup {
            trace!(self, "FAULT n{net} {dir:?}: duplicated");
            self.queue.push(at + extra, event(wire.clone()));
        }
        self.queue.push(at, event(wire));
    }

    /// A TCP reset: both directions die now, both ends hear of it.
    fn reset(&mut self, net: NetId) {
        self.silence(net);
        let to_client = self.now + self.latency();
        let to_server = self.now + self.latency();
        self.queue.push(to_client, Ev::ToClient(net, Wire::Rst));
        self.queue.push(to_server, Ev::ToServer(net, Wire::Rst));
    }

    /// Both directions silently lose everything from now on.
    fn silence(&mut self, net: NetId) {
        if let Some(conn) = self.conns.get_mut(&net) {
            conn.up.alive = false;
            conn.down.alive = false;
        }
    }

    fn accept(&mut self, net: NetId) {
        let Some(conn) = self.conns.get(&net) else {
            return;
        };
        if !conn.client_open {
            return; // the client gave up on it already
        }
        let alive = conn.up.alive;
        let refused = !self.region.up || !alive || (self.chaos && self.chance(self.plan.p_refuse));
        if refused {
            trace!(self, "n{net}: connection refused");
            self.send(net, Dir::Down, Wire::Fin("connection refused"));
            return;
        }
        self.send(net, Dir::Down, Wire::Open);
        let outs = self.region.accept(net, self.now);
        self.apply(outs);
    }

    fn apply(&mut self, outs: Vec<RegionOut>) {
        for out in outs {
            match out {
                RegionOut::Frame { net, frame } => self.send(net, Dir::Down, Wire::Frame(frame)),
                RegionOut::Close { net } => {
                    self.send(net, Dir::Down, Wire::Fin("closed by the region"))
                }
                RegionOut::PingAt { net, at } => self.queue.push(at, Ev::Ping(net)),
                RegionOut::PongCheckAt { net, ping, at } => {
                    self.queue.push(at, Ev::PongCheck(net, ping));
                }
            }
        }
    }

    fn arrive_at_region(&mut self, net: NetId, wire: Wire) {
        let Some(conn) = self.conns.get(&net) else {
            return;
        };
        let alive = conn.up.alive;
        let (client, inc) = (conn.client, conn.inc);
        if !self.region.has_socket(net) {
            return;
        }
        match wire {
            Wire::Rst => {
                trace!(self, "region <- c{client}#{inc} n{net}: reset");
                self.region.closed(net);
            }
            _ if !alive => {}
            Wire::Fin(why) => {
                trace!(self, "region <- c{client}#{inc} n{net}: closed ({why})");
                self.region.closed(net);
            }
            Wire::Frame(frame) => {
                trace!(self, "region <- c{client}#{inc} n{net}: {frame}");
                let outs = self.region.frame(net, &frame, self.now);
                self.apply(outs);
            }
            Wire::Open => {}
        }
    }

    fn arrive_at_client(&mut self, net: NetId, wire: Wire) {
        let Some(conn) = self.conns.get_mut(&net) else {
            return;
        };
        let (c, inc, id) = (conn.client, conn.inc, conn.id);
        if !conn.client_open || !self.clients[c].up || self.clients[c].inc != inc {
            return;
        }
        if !matches!(wire, Wire::Rst) && !conn.down.alive {
            return;
        }
        if matches!(wire, Wire::Fin(_) | Wire::Rst) {
            conn.client_open = false;
        }
        let now = self.at();
        let client = &mut self.clients[c];
        client.batch += 1;
        let Some(session) = client.session.as_mut() else {
            return;
        };
        match &wire {
            Wire::Open => session.handle_transport_open(id, now),
            Wire::Frame(frame) => session.handle_frame(id, frame, now),
            Wire::Fin(why) => session.handle_transport_closed(id, why, now),
            Wire::Rst => session.handle_transport_closed(id, "connection reset", now),
        }
        match wire {
            Wire::Open => trace!(self, "c{c}#{inc} n{net}: open"),
            Wire::Frame(frame) => trace!(self, "c{c}#{inc} n{net} <- {frame}"),
            Wire::Fin(why) => trace!(self, "c{c}#{inc} n{net}: closed ({why})"),
            Wire::Rst => trace!(self, "c{c}#{inc} n{net}: reset"),
        }
        self.pump(c);
    }

    // ----- the clients -----

    /// Starts (or restarts) client `c` from what it persisted.
    fn boot(&mut self, c: usize) {
        let now = self.at();
        let seed = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((c as u64) << 32);
        let spaces = self.spaces.clone();
        let client = &mut self.clients[c];
        client.inc += 1;
        client.up = true;
        client.suspended_until = 0;
        client.batch += 1;
        client.wake_floor = 0;
        let mut session = RegionSession::new(
            RegionId::new_unchecked(REGION),
            URL,
            client.token.clone(),
            session_config(),
            seed ^ u64::from(client.inc),
        );
        if !client.online {
            session.network_changed(false, now);
        }
        for (space, cursor) in &client.saved.cursors {
            if !client.left.contains(space) {
                session.restore_cursor(space.clone(), cursor.clone());
            }
        }
        client.session = Some(session);
        client.outbox = Outbox::restore(client.persisted.values().cloned());
        client.outbox_changed = true;
        client.tracks = spaces
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    client.saved.tracks.get(s).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let inc = client.inc;
        let restored = client.persisted.len();
        let cursors: Vec<(SpaceId, Cursor)> = client
            .saved
            .cursors
            .iter()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect();
        trace!(
            self,
            "c{c}#{inc} starts: cursors {cursors:?}, {restored} outbox entries restored"
        );
        for (s, space) in spaces.iter().enumerate() {
            if !self.clients[c].left.contains(space) {
                self.app_join(c, s);
            }
        }
        self.flush_deferred(c);
        self.pump(c);
    }

    /// Makes the sends the app put off, for the spaces it is in.
    fn flush_deferred(&mut self, c: usize) {
        let deferred = std::mem::take(&mut self.clients[c].deferred);
        for space in deferred {
            if self.clients[c].left.contains(&space) {
                self.clients[c].deferred.push(space);
            } else if let Some(s) = self.spaces.iter().position(|x| *x == space) {
                self.make_send(c, s);
            }
        }
    }

    fn request_leave(&mut self, c: usize, space: &SpaceId) {
        let now = self.at();
        let client = &mut self.clients[c];
        let id = client.request_id();
        client.pending.insert(id, Pending::Leave(space.clone()));
        client.batch += 1;
        if let Some(session) = client.session.as_mut() {
            session.request(id, Request::Leave(space.clone()), now);
        }
    }

    /// The app leaves space `s` (once its sends there are through), and joins it again
    /// `away` ms later.
    fn app_leave(&mut self, c: usize, s: usize, away: u64) {
        let space = self.spaces[s].clone();
        let client = &mut self.clients[c];
        if !client.up || client.left.contains(&space) {
            return;
        }
        if client.outbox.list().iter().any(|e| e.space == space) {
            self.queue.push(self.now + 300, Ev::AppLeave(c, s, away));
            return;
        }
        client.left.insert(space.clone());
        self.request_leave(c, &space);
        let client = &mut self.clients[c];
        // The app forgets the space at once, in memory and in its store.
        if let Some(track) = client.tracks.get_mut(&space) {
            track.leave();
            client.saved.tracks.insert(space.clone(), track.clone());
        }
        client.saved.cursors.remove(&space);
        trace!(self, "c{c} app leaves {space} for {away} ms");
        self.queue.push(self.now + away, Ev::AppRejoin(c, s));
        self.pump(c);
    }

    fn app_join(&mut self, c: usize, s: usize) {
        let now = self.at();
        let space = self.spaces[s].clone();
        let client = &mut self.clients[c];
        if let Some(track) = client.tracks.get_mut(&space) {
            track.rejoin();
        }
        let id = client.request_id();
        client.pending.insert(id, Pending::Join(space.clone()));
        client.batch += 1;
        if let Some(session) = client.session.as_mut() {
            session.request(id, Request::Join(space), now);
        }
    }

    /// The app sends its next message to space `s`: into the outbox, persisted at once.
    fn make_send(&mut self, c: usize, s: usize) {
        let space = self.spaces[s].clone();
        let client = &mut self.clients[c];
        let n = client.sends.get(&space).map_or(0, Vec::len);
        let key = IdempotencyKey::new_unchecked(format!("k-c{c}-s{s}-{n}"));
        match client
            .outbox
            .add(key.clone(), space.clone(), format!("c{c} s{s} #{n}"), None)
        {
            Ok(entry) => {
                client.outbox_changed = true;
                client.persisted.insert(entry.order, entry);
                client
                    .sends
                    .entry(space.clone())
                    .or_default()
                    .push(key.clone());
                self.sends_made += 1;
                self.report.stats.sent += 1;
                trace!(self, "c{c} app sends #{n} to {space} ({key})");
            }
            Err(e) => self.report.fail(
                Kind::Contract,
                1,
                format!("c{c}: the outbox refused a new send: {e}"),
            ),
        }
        self.pump(c);
    }

    /// Hands ready sends to the session and carries out everything it asks for, until
    /// neither has anything more.
    fn pump(&mut self, c: usize) {
        loop {
            if !self.clients[c].up {
                return;
            }
            let mut progressed = false;
            let now = self.at();
            let ready = if std::mem::take(&mut self.clients[c].outbox_changed) {
                self.clients[c].outbox.take_ready(MAX_BATCH, |_| true)
            } else {
                Vec::new()
            };
            for batch in ready {
                progressed = true;
                let Some(space) = batch.first().map(|e| e.space.clone()) else {
                    continue;
                };
                let orders: Vec<u64> = batch.iter().map(|e| e.order).collect();
                if orders.len() > 1 {
                    self.report.stats.batched += orders.len() as u64;
                }
                let request =
                    Request::sends(space, batch.iter().map(OutboxEntry::request).collect());
                let client = &mut self.clients[c];
                let id = client.request_id();
                client.pending.insert(id, Pending::Send(orders));
                client.batch += 1;
                if let Some(session) = client.session.as_mut() {
                    session.request(id, request, now);
                }
            }
            while let Some(out) = self.clients[c]
                .session
                .as_mut()
                .and_then(RegionSession::poll_output)
            {
                progressed = true;
                self.output(c, out);
            }
            if !progressed {
                break;
            }
        }
        let client = &mut self.clients[c];
        client.deadline = client
            .session
            .as_ref()
            .and_then(RegionSession::poll_timeout)
            .map(Instant::as_millis);
        if std::mem::take(&mut client.save_due) {
            self.save(c);
        }
    }

    fn output(&mut self, c: usize, out: Output) {
        let inc = self.clients[c].inc;
        match out {
            Output::Connect { conn, url } => {
                if !url.starts_with(URL) {
                    self.report
                        .fail(Kind::Contract, 1, format!("c{c}: connect to {url}"));
                }
                self.next_net += 1;
                let net = self.next_net;
                self.conns.insert(net, Conn::new(c, inc, conn));
                self.clients[c].conns.insert(conn, net);
                trace!(self, "c{c}#{inc} connects: n{net} ({conn:?})");
                if self.clients[c].online {
                    let at = self.now + self.latency();
                    self.queue.push(at, Ev::Accept(net));
                } else {
                    self.queue.push(
                        self.now + 1,
                        Ev::ToClient(net, Wire::Fin("network unreachable")),
                    );
                }
            }
            Output::Transmit { conn, frame, .. } => {
                let Some(&net) = self.clients[c].conns.get(&conn) else {
                    self.report.fail(
                        Kind::Contract,
                        1,
                        format!("c{c}#{inc}: a frame for {conn:?}, which it never opened"),
                    );
                    return;
                };
                if !self.conns.get(&net).is_some_and(|x| x.client_open) {
                    self.report.fail(
                        Kind::Contract,
                        1,
                        format!(
                            "t={} c{c}#{inc}: a frame for {conn:?}, which is closed: {frame}",
                            self.now
                        ),
                    );
                    return;
                }
                trace!(self, "c{c}#{inc} n{net} -> {frame}");
                self.send(net, Dir::Up, Wire::Frame(frame));
            }
            Output::Close { conn } => {
                let Some(&net) = self.clients[c].conns.get(&conn) else {
                    return;
                };
                trace!(self, "c{c}#{inc} closes n{net}");
                if let Some(x) = self.conns.get_mut(&net)
                    && x.client_open
                {
                    x.client_open = false;
                    self.send(net, Dir::Up, Wire::Fin("closed by the client"));
                }
            }
            Output::Event(event) => self.session_event(c, event),
        }
    }

    fn session_event(&mut self, c: usize, event: SessionEvent) {
        if let SessionEvent::Message(m) = &event {
            match self.tamper {
                Some(Tamper::DropSome)
                    if m.seq % 7 == 0 && self.tampered.insert((c, m.id.clone())) =>
                {
                    return;
                }
                Some(Tamper::RepeatSome) if m.seq % 5 == 0 => self.deliver(c, m.clone()),
                _ => {}
            }
        }
        let inc = self.clients[c].inc;
        let now = self.now;
        let who = move || format!("t={now} c{c}#{inc}");
        match event {
            SessionEvent::Message(m) => self.deliver(c, m),
            SessionEvent::ContinuityLost { space, from, to } => {
                self.report.stats.continuity_events += 1;
                trace!(
                    self,
                    "c{c}#{inc} CONTINUITY LOST {space} from {from} to {to:?}"
                );
                if let Some(track) = self.clients[c].tracks.get_mut(&space)
                    && let Some((kind, what)) = track.continuity(from, to)
                {
                    self.report
                        .fail(kind, 1, format!("{} {space}: {what}", who()));
                }
            }
            SessionEvent::Reply { request, result } => {
                let Some(pending) = self.clients[c].pending.remove(&request) else {
                    self.report.fail(
                        Kind::Contract,
                        1,
                        format!("{}: a second answer to {request:?}: {result:?}", who()),
                    );
                    return;
                };
                match pending {
                    Pending::Join(space) => self.join_answered(c, space, result),
                    Pending::Leave(space) => {
                        trace!(self, "c{c}#{inc} left {space}: {result:?}");
                        // Until the region confirms, the app leaves again (and waits before
                        // joining again): a leave that went unanswered may still be applied.
                        if result.is_err() && !self.plan.eager_rejoin {
                            self.request_leave(c, &space);
                        }
                    }
                    Pending::Send(orders) => self.sends_answered(c, orders, result),
                }
            }
            SessionEvent::SubscriptionLost { space, error } => {
                self.report.fail(
                    Kind::Contract,
                    1,
                    format!("{}: subscription to {space} lost: {error}", who()),
                );
            }
            SessionEvent::Problem(e) => {
                self.report.stats.problems += 1;
                trace!(self, "c{c}#{inc} problem: {e}");
            }
            SessionEvent::State(state) => {
                if matches!(state, ConnectionState::Reconnecting { .. }) {
                    self.report.stats.reconnects += 1;
                }
                trace!(self, "c{c}#{inc} state {state:?}");
            }
            SessionEvent::TokenRejected => self.report.fail(
                Kind::Contract,
                1,
                format!("{}: token rejected, though the region accepts it", who()),
            ),
            SessionEvent::Presence(_) | SessionEvent::Typing(_) | SessionEvent::Notification(_) => {
            }
        }
    }

    /// The app hears message `m` from client `c`'s session.
    fn deliver(&mut self, c: usize, m: Message) {
        let inc = self.clients[c].inc;
        let now = self.now;
        let who = move || format!("t={now} c{c}#{inc}");
        self.report.stats.delivered += 1;
        let Some(stored) = self.region.ledger.by_id.get(m.id.as_str()) else {
            self.report.fail(
                Kind::Contract,
                1,
                format!("{}: delivered {m:?}, which the region never stored", who()),
            );
            return;
        };
        if stored.space != m.space
            || stored.seq != m.seq
            || stored.body != m.body
            || stored.sender != m.sender
        {
            self.report.fail(
                Kind::Contract,
                1,
                format!(
                    "{}: delivered {m:?}, which differs from what the region stored: {stored:?}",
                    who()
                ),
            );
        }
        let epoch = stored.epoch;
        trace!(
            self,
            "c{c}#{inc} DELIVERS {} #{} (epoch {epoch})", m.space, m.seq
        );
        let client = &mut self.clients[c];
        let batch = client.batch;
        if client.rolled_back.remove(&(m.space.clone(), epoch, m.seq)) {
            self.report.stats.redelivered += 1;
        }
        if let Some(track) = client.tracks.get_mut(&m.space)
            && let Some((kind, what)) = track.deliver(epoch, m.seq, batch)
        {
            self.report
                .fail(kind, 1, format!("{} {}: {what}", who(), m.space));
        }
    }

    fn join_answered(&mut self, c: usize, space: SpaceId, result: meridian::Result<Response>) {
        let inc = self.clients[c].inc;
        let now = self.now;
        let who = move || format!("t={now} c{c}#{inc}");
        match result {
            Ok(Response::Joined {
                space: joined,
                head_seq,
            }) => {
                trace!(self, "c{c}#{inc} joined {joined} at head {head_seq}");
                let client = &mut self.clients[c];
                let epoch = client.session.as_ref().and_then(|s| {
                    s.cursors()
                        .find(|(s, _)| **s == space)
                        .and_then(|(_, cur)| epoch_number(&cur.epoch))
                });
                let batch = client.batch;
                client.save_due = true;
                let anomaly = match (joined == space, epoch) {
                    (false, _) => Some((
                        Kind::Contract,
                        format!("the join of {space} was answered for {joined}"),
                    )),
                    (true, None) => Some((
                        Kind::Contract,
                        format!("joined {space}, but the session has no cursor for it"),
                    )),
                    (true, Some(epoch)) => client
                        .tracks
                        .get_mut(&space)
                        .and_then(|t| t.joined(epoch, head_seq, batch)),
                };
                if let Some((kind, what)) = anomaly {
                    self.report
                        .fail(kind, 1, format!("{} {space}: {what}", who()));
                }
            }
            Ok(other) => self.report.fail(
                Kind::Contract,
                1,
                format!("{}: a join of {space} answered {other:?}", who()),
            ),
            Err(e) => {
                // The app tries again a little later, as a real app would.
                trace!(self, "c{c}#{inc} join of {space} failed: {e}");
                let s = self.spaces.iter().position(|x| *x == space).unwrap_or(0);
                self.queue.push(self.now + 200, Ev::AppJoin(c, inc, s));
            }
        }
    }

    /// The answer to a send or a batch: each entry settled in the batch's order.
    fn sends_answered(&mut self, c: usize, orders: Vec<u64>, result: meridian::Result<Response>) {
        let count = orders.len();
        let results: Vec<meridian::Result<SendReceipt>> = match result.map(|r| r.receipts(count)) {
            Ok(Ok(receipts)) => receipts.into_iter().map(Ok).collect(),
            Ok(Err(other)) => vec![
                Err(meridian::Error::Internal(format!(
                    "a send answered {other:?}"
                )));
                count
            ],
            Err(e) => vec![Err(e); count],
        };
        for (order, result) in orders.into_iter().zip(results) {
            self.send_answered(c, order, result);
        }
    }

    fn send_answered(&mut self, c: usize, order: u64, result: meridian::Result<SendReceipt>) {
        let inc = self.clients[c].inc;
        let now = self.now;
        let who = move || format!("t={now} c{c}#{inc}");
        self.clients[c].outbox_changed = true;
        let settled = self.clients[c].outbox.settle(order, result);
        match settled {
            Some(Settled::Delivered(entry, receipt)) => {
                trace!(
                    self,
                    "c{c}#{inc} send {} stored as #{}", entry.key, receipt.seq
                );
                let matches = self
                    .region
                    .ledger
                    .by_id
                    .get(receipt.message_id.as_str())
                    .is_some_and(|s| s.key == entry.key && s.seq == receipt.seq);
                if !matches {
                    self.report.fail(
                        Kind::Contract,
                        1,
                        format!(
                            "{}: the receipt {receipt:?} of {} names another message",
                            who(),
                            entry.key
                        ),
                    );
                }
                // The store deletes the entry; now and then that write lags (and a crash
                // in between brings the entry back: the region must deduplicate it).
                if self.chaos && self.chance(0.3) {
                    let at = self.now + self.rng.u64(1..=500);
                    self.queue.push(at, Ev::PersistDelete(c, inc, order));
                } else {
                    self.clients[c].persisted.remove(&order);
                }
            }
            Some(Settled::Failed(entry, error)) => {
                self.report.fail(
                    Kind::Contract,
                    1,
                    format!(
                        "{}: the send {} was refused for good: {error}",
                        who(),
                        entry.key
                    ),
                );
                self.clients[c].persisted.insert(order, entry);
            }
            Some(Settled::Retry(entry)) => {
                self.report.stats.resubmits += 1;
                trace!(self, "c{c}#{inc} send {} goes back in line", entry.key);
            }
            None => self.report.fail(
                Kind::Contract,
                1,
                format!(
                    "{}: an answer for outbox order {order}, which the outbox doesn't hold",
                    who()
                ),
            ),
        }
    }

    /// The app persists its cursors (read from the session) with its view of each space.
    fn save(&mut self, c: usize) {
        let client = &mut self.clients[c];
        let Some(session) = client.session.as_ref() else {
            return;
        };
        let cursors: BTreeMap<SpaceId, Cursor> =
            session.cursors().map(|(s, cur)| (s.clone(), cur)).collect();
        let mut anomalies = Vec::new();
        for (space, track) in &mut client.tracks {
            let cursor = cursors
                .get(space)
                .map(|cur| (epoch_number(&cur.epoch).unwrap_or(0), cur.last_seq));
            if let Some(a) = track.reconcile(cursor) {
                anomalies.push((space.clone(), a));
            }
        }
        client.saved = Saved {
            cursors,
            tracks: client.tracks.clone(),
        };
        let who = format!("t={} c{c}#{}", self.now, client.inc);
        for (space, (kind, what)) in anomalies {
            self.report
                .fail(kind, 1, format!("{} {space}: {what}", who));
        }
    }

    fn client_timeout(&mut self, c: usize) {
        let now = self.at();
        let client = &mut self.clients[c];
        client.batch += 1;
        let Some(session) = client.session.as_mut() else {
            return;
        };
        session.handle_timeout(now);
        self.pump(c);
        let client = &mut self.clients[c];
        let Some(session) = client.session.as_ref() else {
            return;
        };
        // A timer due again at once is fine (a zero backoff); one that stays due however
        // often it is handled is a busy loop in any driver.
        let due_again = session.poll_timeout().filter(|t| *t <= now);
        if client.wake_at == self.now {
            client.wakes_at_once += 1;
        } else {
            client.wake_at = self.now;
            client.wakes_at_once = 0;
        }
        if let Some(t) = due_again
            && client.wakes_at_once >= 8
        {
            // As a driver whose timer re-fires at a 10 ms granularity.
            client.wake_floor = self.now + 10;
            self.report.stats.timer_spins += 1;
            if !self.spin_reported {
                self.spin_reported = true;
                let state = session.connection_state();
                self.report.fail(
                    Kind::Contract,
                    1,
                    format!(
                        "t={} c{c}#{}: poll_timeout() stays at {} ms however often handle_timeout({} ms) runs (state {state:?}): a busy loop",
                        self.now,
                        client.inc,
                        t.as_millis(),
                        self.now
                    ),
                );
            }
        }
    }

    // ----- faults -----

    fn fault(&mut self, fault: Fault) {
        match fault {
            Fault::RegionRestart {
                keep_state,
                down_ms,
                stop,
            } => {
                if !self.region.up {
                    return;
                }
                self.report.stats.server_restarts += 1;
                if !keep_state {
                    self.report.stats.wipes += 1;
                }
                let state = if keep_state { "with" } else { "WITHOUT" };
                trace!(
                    self,
                    "FAULT region restarts {state} its state ({stop:?}), down for {down_ms} ms"
                );
                let nets = self.region.stop(keep_state);
                for net in nets {
                    match stop {
                        Stop::Graceful => {
                            self.send(net, Dir::Down, Wire::Frame("41".into()));
                            self.send(net, Dir::Down, Wire::Fin("region shut down"));
                        }
                        Stop::Crash => self.reset(net),
                        Stop::Vanish => self.silence(net),
                    }
                }
                self.queue
                    .push(self.now + down_ms, Ev::Fault(Fault::RegionUp));
            }
            Fault::RegionUp => {
                trace!(self, "region is up (epoch {})", self.region.epoch);
                self.region.up = true;
            }
            Fault::ClientCrash { client: c, down_ms } => self.crash(c, down_ms),
            Fault::ClientBoot { client: c } => self.boot(c),
            Fault::Offline { client: c, ms } => {
                if !self.clients[c].online {
                    return;
                }
                trace!(self, "FAULT c{c} goes offline for {ms} ms");
                self.clients[c].online = false;
                self.silence_client(c);
                let now = self.at();
                let client = &mut self.clients[c];
                client.batch += 1;
                if let Some(session) = client.session.as_mut() {
                    session.network_changed(false, now);
                }
                self.pump(c);
                self.queue
                    .push(self.now + ms, Ev::Fault(Fault::Online { client: c }));
            }
            Fault::Online { client: c } => {
                trace!(self, "c{c} is online again");
                self.clients[c].online = true;
                self.network_changed(c);
            }
            Fault::Switch { client: c } => {
                if !self.clients[c].online {
                    return;
                }
                trace!(self, "FAULT c{c} switches networks: its sockets go silent");
                self.silence_client(c);
                self.network_changed(c);
            }
            Fault::Suspend { client: c, ms } => {
                let client = &mut self.clients[c];
                if !client.up {
                    return;
                }
                client.suspended_until = self.now + ms;
                let inc = client.inc;
                trace!(self, "FAULT c{c}#{inc} is frozen for {ms} ms");
                self.queue.push(self.now + ms, Ev::Resume(c, inc));
            }
            Fault::Reset => {
                let open: Vec<NetId> = self
                    .conns
                    .iter()
                    .filter(|(net, x)| x.client_open && self.region.has_socket(**net))
                    .map(|(net, _)| *net)
                    .collect();
                if !open.is_empty() {
                    let net = open[self.rng.pick(0..open.len())];
                    trace!(self, "FAULT n{net} is reset");
                    self.reset(net);
                }
            }
        }
    }

    fn network_changed(&mut self, c: usize) {
        let now = self.at();
        let client = &mut self.clients[c];
        if let Some(session) = client.session.as_mut() {
            client.batch += 1;
            session.network_changed(true, now);
        }
        self.pump(c);
    }

    fn silence_client(&mut self, c: usize) {
        let nets: Vec<NetId> = self
            .conns
            .iter()
            .filter(|(_, x)| x.client == c)
            .map(|(net, _)| *net)
            .collect();
        for net in nets {
            self.silence(net);
        }
    }

    /// The client's process dies: the session and the outbox in memory are gone; the app's
    /// view rolls back to what it persisted.
    fn crash(&mut self, c: usize, down_ms: u64) {
        if !self.clients[c].up {
            return;
        }
        self.report.stats.client_restarts += 1;
        trace!(
            self,
            "FAULT c{c}#{} crashes, restarts in {down_ms} ms", self.clients[c].inc
        );
        let nets: Vec<NetId> = self.clients[c].conns.values().copied().collect();
        let client = &mut self.clients[c];
        client.up = false;
        client.session = None;
        client.deadline = None;
        client.pending.clear();
        client.conns.clear();
        client.outbox = Outbox::new();
        client.save_due = false;
        // What the app saw after its last save is gone with the process.
        for (space, track) in &client.tracks {
            let saved = client.saved.tracks.get(space);
            for seg in &track.segments {
                for seq in &seg.delivered {
                    let kept = saved.is_some_and(|t| {
                        t.segments
                            .iter()
                            .any(|s| s.epoch == seg.epoch && s.delivered.contains(seq))
                    });
                    if !kept {
                        client.rolled_back.insert((space.clone(), seg.epoch, *seq));
                    }
                }
            }
        }
        for net in nets {
            let open = self.conns.get(&net).is_some_and(|x| x.client_open);
            if let Some(x) = self.conns.get_mut(&net) {
                x.client_open = false;
            }
            // The OS closes the dead process's sockets, if the network lets it say so.
            if open && self.rng.bool() {
                self.send(net, Dir::Up, Wire::Fin("client process died"));
            }
        }
        self.queue.push(
            self.now + down_ms,
            Ev::Fault(Fault::ClientBoot { client: c }),
        );
    }

    // ----- the end -----

    fn caught_up(&self, track: &Track, space: &SpaceId) -> bool {
        let epoch = self.region.epoch;
        let head = self.region.head(space);
        match track.pos {
            Pos::At { epoch: e, seq } => e == epoch && seq == head,
            Pos::Reset { from_epoch } => from_epoch < epoch && head == 0,
            Pos::NotStarted | Pos::Left => false,
        }
    }

    fn quiescent(&self) -> bool {
        if self.chaos || !self.region.up || self.sends_made < self.total_sends() {
            return false;
        }
        self.clients.iter().all(|client| {
            client.up
                && client.online
                && client.left.is_empty()
                && client.outbox.is_empty()
                && self
                    .spaces
                    .iter()
                    .all(|s| client.tracks.get(s).is_some_and(|t| self.caught_up(t, s)))
        })
    }

    fn total_sends(&self) -> usize {
        self.plan.clients * self.plan.spaces * self.plan.sends
    }

    fn stuck(&mut self, cap: u64) {
        let mut lines = Vec::new();
        for (c, client) in self.clients.iter().enumerate() {
            let state = client.session.as_ref().map(RegionSession::connection_state);
            let mut spaces = Vec::new();
            for s in &self.spaces {
                let pos = client.tracks.get(s).map(|t| t.pos);
                spaces.push(format!(
                    "{s}: {pos:?} (region head {} in epoch {})",
                    self.region.head(s),
                    self.region.epoch
                ));
            }
            lines.push(format!(
                "c{c}#{} up={} online={} state={state:?} outbox={} [{}]",
                client.inc,
                client.up,
                client.online,
                client.outbox.list().len(),
                spaces.join("; ")
            ));
        }
        self.report.fail(
            Kind::Contract,
            1,
            format!(
                "not quiescent {} ms after the faults stopped ({} of {} sends made): {}",
                cap - self.plan.chaos_ms,
                self.sends_made,
                self.total_sends(),
                lines.join(" | ")
            ),
        );
    }

    fn finish(mut self) -> Report {
        self.report.stats.sim_ms = self.now;
        self.report.stats.dedup_hits = self.region.dedup_hits;
        let ledger = &self.region.ledger;
        let final_epoch = self.region.epoch;
        for client in &mut self.clients {
            for track in client.tracks.values_mut() {
                track.settle(final_epoch);
            }
        }
        for (c, client) in self.clients.iter().enumerate() {
            for space in &self.spaces {
                if let Some(track) = client.tracks.get(space) {
                    check::verify_track(
                        &mut self.report,
                        &format!("c{c}"),
                        space,
                        track,
                        ledger,
                        final_epoch,
                    );
                }
            }
        }
        self.check_sends();
        self.report
    }

    /// Every send the apps made is stored once (per epoch), in the order each app made them.
    fn check_sends(&mut self) {
        let ledger = &self.region.ledger;
        let mut owner: BTreeMap<&IdempotencyKey, (usize, usize)> = BTreeMap::new();
        for (c, client) in self.clients.iter().enumerate() {
            for (space, keys) in &client.sends {
                for (n, key) in keys.iter().enumerate() {
                    owner.insert(key, (c, n));
                    let stores = ledger.by_key.get(key).map_or(&[][..], Vec::as_slice);
                    if stores.is_empty() {
                        self.report.fail(
                            Kind::Lost,
                            1,
                            format!("c{c}'s send #{n} to {space} ({key}) was never stored"),
                        );
                    }
                    let mut per_epoch: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
                    for (epoch, seq) in stores {
                        per_epoch.entry(*epoch).or_default().push(*seq);
                    }
                    for (epoch, seqs) in per_epoch {
                        if seqs.len() > 1 {
                            self.report.fail(
                                Kind::Duplicated,
                                seqs.len() as u64 - 1,
                                format!("c{c}'s send #{n} to {space} ({key}) was stored {} times in epoch {epoch}: seqs {seqs:?}", seqs.len()),
                            );
                        }
                    }
                }
            }
        }
        // Order: within an epoch, the first store of each key, per client, follows the order
        // the app made them in. (A key first stored in an epoch since lost may come back in a
        // later epoch out of line: that is recovery, after a reported continuity loss.)
        let mut last: BTreeMap<(u32, &SpaceId, usize), (usize, u64)> = BTreeMap::new();
        for ((epoch, space, seq), id) in &ledger.stored {
            let Some(stored) = ledger.by_id.get(id) else {
                continue;
            };
            let Some(&(c, n)) = owner.get(&stored.key) else {
                self.report.fail(
                    Kind::Contract,
                    1,
                    format!("the region stored {} which no app sent", stored.key),
                );
                continue;
            };
            let stores = ledger
                .by_key
                .get(&stored.key)
                .map_or(&[][..], Vec::as_slice);
            if stores.first().map(|(e, _)| e) != Some(epoch)
                || stores.iter().find(|(e, _)| e == epoch).map(|(_, s)| s) != Some(seq)
            {
                continue;
            }
            if let Some(&(pn, pseq)) = last.get(&(*epoch, space, c))
                && n <= pn
            {
                self.report.fail(
                    Kind::OutOfOrder,
                    1,
                    format!("c{c}'s sends to {space} were stored out of order in epoch {epoch}: #{n} at seq {seq} after #{pn} at seq {pseq}"),
                );
            }
            last.insert((*epoch, space, c), (n, *seq));
        }
    }
}
