//! The fake network's building blocks: a discrete-event queue and one-way links.
//!
//! Time is simulated milliseconds. The queue orders events by `(time, insertion number)`,
//! so two events at the same instant run in the order they were scheduled: nothing
//! depends on a hash or on the wall clock.

use std::collections::BTreeMap;

use meridian::session::ConnId;

/// Identifies one simulated connection (one WebSocket) across the whole run. A session's
/// own `ConnId`s restart at 1 when the client restarts; these never repeat.
pub type NetId = u64;

/// What travels on a link.
#[derive(Debug, Clone)]
pub enum Wire {
    /// The connection attempt succeeded (client side only: the socket is open).
    Open,
    /// One text frame.
    Frame(String),
    /// An orderly close (TCP FIN): arrives after everything sent before it.
    Fin(&'static str),
    /// A reset (TCP RST): arrives at once, whatever was in flight is lost.
    Rst,
}

/// A direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to region.
    Up,
    /// Region to client.
    Down,
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// False once the link silently loses everything (half-open, reset, unplugged).
    pub alive: bool,
    /// When the last in-order item arrives: later items arrive no earlier (TCP is FIFO).
    pub tail: u64,
}

impl Link {
    fn new() -> Self {
        Self {
            alive: true,
            tail: 0,
        }
    }
}

/// A simulated WebSocket between one incarnation of a client and the region.
#[derive(Debug)]
pub struct Conn {
    /// The client's index.
    pub client: usize,
    /// Which incarnation of the client (it changes at each client restart).
    pub inc: u32,
    /// The session's id for it.
    pub id: ConnId,
    /// Client to region.
    pub up: Link,
    /// Region to client.
    pub down: Link,
    /// Whether the client still holds it (not closed, not told it closed).
    pub client_open: bool,
}

impl Conn {
    /// A connection the client just asked for.
    pub fn new(client: usize, inc: u32, id: ConnId) -> Self {
        Self {
            client,
            inc,
            id,
            up: Link::new(),
            down: Link::new(),
            client_open: true,
        }
    }

    /// The link in `dir`.
    pub fn link(&mut self, dir: Dir) -> &mut Link {
        match dir {
            Dir::Up => &mut self.up,
            Dir::Down => &mut self.down,
        }
    }
}

/// A discrete-event queue: events ordered by time, then by the order they were pushed.
#[derive(Debug)]
pub struct Queue<E> {
    items: BTreeMap<(u64, u64), E>,
    next: u64,
}

impl<E> Queue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            items: BTreeMap::new(),
            next: 0,
        }
    }

    /// Schedules `event` at `at`.
    pub fn push(&mut self, at: u64, event: E) {
        self.items.insert((at, self.next), event);
        self.next += 1;
    }

    /// When the next event is due.
    pub fn peek_time(&self) -> Option<u64> {
        self.items.keys().next().map(|(t, _)| *t)
    }

    /// Takes the next event.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.items.pop_first().map(|((t, _), e)| (t, e))
    }
}
