//! The known bugs of the state machines that the simulation found and reported: each is
//! recognised precisely, counted and shown in the summary, and fails a run only when
//! `MERIDIAN_SIM_STRICT=1`. Remove an entry once its bug is fixed, so that it can never come
//! back unnoticed.

/// The known bugs: name and description.
pub const KNOWN_BUGS: &[(&str, &str)] = &[
    (
        JOIN_ANSWERED_TWICE,
        "RegionSession answers a Join request twice: Err(Timeout) at its deadline, then \
         Ok(Joined) when the join goes through later (the timed-out id stays in the \
         subscription's waiters); or Err(Closed) when the app leaves the space, then \
         Err(Timeout) at the deadline (the id stays in `requests`); close(), abort() and a \
         refused connect answer it from `requests` and again from the waiters",
    ),
    (
        NEW_EPOCH_DROPPED,
        "RegionSession drops, as duplicates, messages of the region's new history epoch \
         that arrive before the answer to its rejoin (their seq is compared with the last \
         seq of the old epoch): after the ContinuityLost they are never delivered, and \
         nothing asks for them again until a later message opens a gap",
    ),
    (
        IMPLICIT_REJOIN,
        "A send restored from the store after a restart (delivered before the crash, its \
         record not yet deleted) subscribes the session again to a space the app has left \
         since: `Request::Send` joins implicitly, so the app gets that space's messages \
         (and the engine persists its cursor) without ever joining it again",
    ),
    (
        GAP_TIMER_SPINS,
        "RegionSession::poll_timeout() reports the gap deadline of a subscription whose \
         rejoin is in flight, which handle_timeout() ignores: the timer stays in the past \
         (a busy loop) until the join is answered",
    ),
];

/// See [`KNOWN_BUGS`].
pub const IMPLICIT_REJOIN: &str = "restored-send-rejoins-a-left-space";
/// See [`KNOWN_BUGS`].
pub const NEW_EPOCH_DROPPED: &str = "new-epoch-messages-dropped-as-duplicates";
/// See [`KNOWN_BUGS`].
pub const JOIN_ANSWERED_TWICE: &str = "join-answered-twice";
/// See [`KNOWN_BUGS`].
pub const GAP_TIMER_SPINS: &str = "gap-timer-spins-while-rejoining";

/// The ack id of a `space:join` frame (`42<id>["space:join",...]`).
pub fn join_ack_id(frame: &str) -> Option<u64> {
    let rest = frame.strip_prefix("42")?;
    let digits = rest.find('[')?;
    rest[digits..]
        .starts_with("[\"space:join\"")
        .then(|| rest[..digits].parse().ok())?
}

/// The message id of a `message` frame.
pub fn message_id(frame: &str) -> Option<&str> {
    if !frame.starts_with("42[\"message\"") {
        return None;
    }
    let rest = &frame[frame.find("\"id\":\"")? + 6..];
    Some(&rest[..rest.find('"')?])
}

/// The ack id of an ack frame (`43<id>[...]`).
pub fn ack_id(frame: &str) -> Option<u64> {
    let rest = frame.strip_prefix("43")?;
    rest[..rest.find('[')?].parse().ok()
}
