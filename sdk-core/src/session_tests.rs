//! Deterministic tests of the region session: a scripted region and a fake clock.

use std::time::Duration;

use meridian_test_macros::meridian_test;
use serde_json::{Value, json};

use super::*;
use crate::codec::{EioPacket, SioPacket, SioPacketKind};
use crate::model::{IdempotencyKey, MessageId, UserId};

const HANDSHAKE: &str =
    r#"0{"sid":"abc","upgrades":[],"pingInterval":1000,"pingTimeout":500,"maxPayload":1000000}"#;

/// Drives one session as a region would, recording what it sends and reports.
struct Region {
    session: RegionSession,
    now: Instant,
    conn: Option<ConnId>,
    connects: usize,
    sent: Vec<SioPacket>,
    pongs: usize,
    events: Vec<SessionEvent>,
}

impl Region {
    fn new() -> Self {
        let config = SessionConfig {
            backoff: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_millis(1000),
            },
            ..SessionConfig::default()
        };
        Self {
            session: RegionSession::new(
                RegionId::new_unchecked("eu-west"),
                "ws://127.0.0.1:1",
                "tok".into(),
                config,
                7,
            ),
            now: Instant::from_millis(1_000),
            conn: None,
            connects: 0,
            sent: Vec::new(),
            pongs: 0,
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Connect { conn, url } => {
                    assert!(
                        url.ends_with("/socket.io/?EIO=4&transport=websocket"),
                        "{url}"
                    );
                    self.conn = Some(conn);
                    self.connects += 1;
                }
                Output::Transmit { conn, frame, .. } => {
                    assert_eq!(Some(conn), self.conn, "frame on a stale transport");
                    match EioPacket::decode(&frame).unwrap() {
                        EioPacket::Message(m) => self.sent.push(SioPacket::decode(&m).unwrap()),
                        EioPacket::Pong(_) => self.pongs += 1,
                        other => panic!("unexpected frame {other:?}"),
                    }
                }
                Output::Close { conn } => {
                    if self.conn == Some(conn) {
                        self.conn = None;
                    }
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn request(&mut self, id: u64, request: Request) {
        self.session.request(RequestId(id), request, self.now);
        self.drain();
    }

    /// Completes socket open, Engine.IO handshake and Socket.IO auth.
    fn accept(&mut self) {
        let conn = self.conn.expect("a connect was asked for");
        self.session.handle_transport_open(conn, self.now);
        self.frame(HANDSHAKE);
        let auth = self.sent.pop().expect("an auth packet");
        assert_eq!(
            auth.kind,
            SioPacketKind::Connect(Some(json!({"token": "tok", "protocol": 1})))
        );
        self.frame(&EioPacket::Message("0{\"sid\":\"s1\"}".into()).encode());
    }

    fn frame(&mut self, frame: &str) {
        let conn = self.conn.expect("an open transport");
        self.session.handle_frame(conn, frame, self.now);
        self.drain();
    }

    fn push(&mut self, name: &str, arg: Value) {
        let p = SioPacket::event(name, vec![arg], None);
        self.frame(&EioPacket::Message(p.encode()).encode());
    }

    fn ack(&mut self, ack_id: u64, arg: Value) {
        let p = SioPacket::main(SioPacketKind::Ack {
            ack_id,
            args: vec![arg],
        });
        self.frame(&EioPacket::Message(p.encode()).encode());
    }

    /// The oldest event the session emitted and not yet inspected, with its ack id and argument.
    fn take_emit(&mut self) -> (String, Option<u64>, Value) {
        assert!(!self.sent.is_empty(), "the session sent nothing");
        match self.sent.remove(0).kind {
            SioPacketKind::Event {
                name,
                mut args,
                ack_id,
            } => (name, ack_id, args.remove(0)),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn drop_link(&mut self) {
        let conn = self.conn.take().expect("an open transport");
        self.session
            .handle_transport_closed(conn, "reset", self.now);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.session.handle_timeout(self.now);
        self.drain();
    }

    fn advance_to_next_timeout(&mut self) {
        let at = self.session.poll_timeout().expect("a timer");
        self.advance(at.saturating_since(self.now));
    }

    fn messages(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect()
    }

    fn reply(&self, id: u64) -> Option<&Result<Response>> {
        self.events.iter().find_map(|e| match e {
            SessionEvent::Reply { request, result } if *request == RequestId(id) => Some(result),
            _ => None,
        })
    }

    /// Answers the rejoin the session sends first on a new connection (head 0).
    fn answer_rejoin(&mut self, space: &str) {
        let (name, ack, arg) = self.take_emit();
        assert_eq!(name, "space:join", "subscriptions are restored first");
        assert_eq!(arg["space"], space);
        self.ack(
            ack.unwrap(),
            json!({"ok": {"space": space, "head_seq": 0, "complete": true}}),
        );
    }

    /// Joins `space` with request 1 and answers with `head`.
    fn joined(&mut self, space: &str, head: u64) {
        self.request(1, Request::Join(SpaceId::new_unchecked(space)));
        self.accept();
        let (name, ack, arg) = self.take_emit();
        assert_eq!(name, "space:join");
        assert_eq!(arg, json!({"space": space}));
        self.ack(
            ack.unwrap(),
            json!({"ok": {"space": space, "head_seq": head, "missed": [], "complete": true}}),
        );
    }
}

fn message(space: &str, seq: u64) -> Value {
    serde_json::to_value(Message {
        space: SpaceId::new_unchecked(space),
        seq,
        id: MessageId::new_unchecked(format!("m{seq}")),
        sender: UserId::new_unchecked("sam"),
        body: format!("body {seq}"),
        sealed: None,
        sent_at_ms: 0,
        trace: None,
    })
    .unwrap()
}

fn send(space: &str, key: &str) -> Request {
    Request::Send(SendRequest {
        space: SpaceId::new_unchecked(space),
        key: IdempotencyKey::new_unchecked(key),
        body: "hi".into(),
        sealed: None,
        trace: None,
    })
}

#[meridian_test]
fn the_connection_opens_lazily_on_first_use_and_a_join_is_answered() {
    let mut r = Region::new();
    assert_eq!(
        r.session.poll_timeout(),
        None,
        "an unused session sets no timer"
    );
    assert_eq!(r.connects, 0);
    r.joined("s", 4);
    assert_eq!(r.connects, 1);
    assert_eq!(
        r.reply(1),
        Some(&Ok(Response::Joined {
            space: SpaceId::new_unchecked("s"),
            head_seq: 4
        }))
    );
    assert_eq!(r.session.connection_state(), ConnectionState::Connected);
}

#[meridian_test]
fn messages_arrive_once_and_in_seq_order_even_when_the_region_reorders_or_repeats() {
    let mut r = Region::new();
    r.joined("s", 4);
    for seq in [5, 7, 6, 6, 5, 8] {
        r.push("message", message("s", seq));
    }
    assert_eq!(r.messages(), vec![5, 6, 7, 8]);
}

#[meridian_test]
fn after_a_reconnect_the_session_rejoins_with_since_and_delivers_what_it_missed() {
    let mut r = Region::new();
    r.joined("s", 4);
    r.push("message", message("s", 5));
    r.drop_link();
    assert!(matches!(
        r.session.connection_state(),
        ConnectionState::Reconnecting { attempt: 1, .. }
    ));
    r.advance_to_next_timeout();
    assert_eq!(r.connects, 2, "a new attempt after the backoff");
    r.accept();
    let (name, ack, arg) = r.take_emit();
    assert_eq!(name, "space:join");
    assert_eq!(arg, json!({"space": "s", "since": 5}));
    // A live message can overtake the join's answer: it must wait for the missed ones.
    r.push("message", message("s", 8));
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 7, "missed": [message("s", 6), message("s", 7)], "complete": true}}),
    );
    assert_eq!(r.messages(), vec![5, 6, 7, 8]);
}

#[meridian_test]
fn an_incomplete_catch_up_pages_on_with_another_join() {
    let mut r = Region::new();
    r.joined("s", 1);
    r.drop_link();
    r.advance_to_next_timeout();
    r.accept();
    let (_, ack, _) = r.take_emit();
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 3, "missed": [message("s", 2)], "complete": false}}),
    );
    let (name, ack, arg) = r.take_emit();
    assert_eq!(
        (name.as_str(), arg),
        ("space:join", json!({"space": "s", "since": 2}))
    );
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 3, "missed": [message("s", 3)], "complete": true}}),
    );
    assert_eq!(r.messages(), vec![2, 3]);
}

#[meridian_test]
fn a_hole_that_stays_open_is_filled_by_asking_the_region() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.push("message", message("s", 2));
    assert_eq!(r.messages(), Vec::<u64>::new(), "2 waits for 1");
    r.advance(Duration::from_millis(600));
    let (name, ack, arg) = r.take_emit();
    assert_eq!(
        (name.as_str(), arg),
        ("space:join", json!({"space": "s", "since": 0}))
    );
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 2, "missed": [message("s", 1), message("s", 2)], "complete": true}}),
    );
    assert_eq!(r.messages(), vec![1, 2]);
}

#[meridian_test]
fn a_send_in_flight_when_the_link_drops_is_sent_again_with_the_same_key() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.request(2, send("s", "k1"));
    let (name, _, arg) = r.take_emit();
    assert_eq!(name, "message:send");
    assert_eq!(arg["key"], "k1");
    r.drop_link();
    r.advance_to_next_timeout();
    r.accept();
    r.answer_rejoin("s");
    let (name, ack, arg) = r.take_emit();
    assert_eq!((name.as_str(), &arg["key"]), ("message:send", &json!("k1")));
    r.ack(
        ack.unwrap(),
        json!({"ok": {"message_id": "m1", "seq": 1, "sent_at_ms": 5}}),
    );
    assert!(matches!(r.reply(2), Some(Ok(Response::Sent(rcpt))) if rcpt.seq == 1));
}

#[meridian_test]
fn sends_to_one_space_go_one_at_a_time_in_the_order_they_were_made() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.request(2, send("s", "a"));
    r.request(3, send("s", "b"));
    r.request(4, send("t", "c")); // another space, not joined: goes at once, no join
    let (name, ack_a, arg) = r.take_emit();
    assert_eq!((name.as_str(), &arg["key"]), ("message:send", &json!("a")));
    let (name, _, arg) = r.take_emit();
    assert_eq!((name.as_str(), &arg["key"]), ("message:send", &json!("c")));
    assert!(r.sent.is_empty(), "b waits for a's answer");
    assert_eq!(
        r.session.subscribed().count(),
        1,
        "sending to a space does not subscribe to it"
    );
    r.ack(
        ack_a.unwrap(),
        json!({"ok": {"message_id": "m1", "seq": 1, "sent_at_ms": 5}}),
    );
    let (name, _, arg) = r.take_emit();
    assert_eq!((name.as_str(), &arg["key"]), ("message:send", &json!("b")));
}

#[meridian_test]
fn the_session_answers_pings_and_reconnects_when_they_stop() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.advance(Duration::from_millis(900));
    r.frame("2");
    assert_eq!(r.pongs, 1);
    r.advance(Duration::from_millis(1400));
    assert_eq!(r.session.connection_state(), ConnectionState::Connected);
    // pingInterval 1000 + pingTimeout 500 + grace 1000 without a ping: the link is dead.
    r.advance(Duration::from_millis(1200));
    assert!(matches!(
        r.session.connection_state(),
        ConnectionState::Reconnecting { .. }
    ));
    assert_eq!(r.conn, None, "the dead transport was closed");
}

#[meridian_test]
fn a_refused_connection_fails_the_waiting_requests_with_a_typed_error() {
    let mut r = Region::new();
    r.request(1, Request::Join(SpaceId::new_unchecked("s")));
    let conn = r.conn.unwrap();
    r.session.handle_transport_open(conn, r.now);
    r.frame(HANDSHAKE);
    r.frame(&EioPacket::Message("4{\"message\":\"unauthorized: bad token\"}".into()).encode());
    let Some(Err(e)) = r.reply(1) else {
        panic!("expected a failed join, got {:?}", r.events)
    };
    assert_eq!(e.code(), crate::ErrorCode::Unauthorized);
    assert_eq!(r.session.connection_state(), ConnectionState::Idle);
}

#[meridian_test]
fn a_malformed_frame_ends_the_connection_cleanly_and_is_reported() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.frame("4{garbage");
    assert!(r.events.iter().any(
        |e| matches!(e, SessionEvent::Problem(err) if err.code() == crate::ErrorCode::Protocol)
    ));
    assert!(matches!(
        r.session.connection_state(),
        ConnectionState::Reconnecting { .. }
    ));
    // The subscription survives and is restored on the next connection.
    r.advance_to_next_timeout();
    r.accept();
    let (name, _, arg) = r.take_emit();
    assert_eq!(
        (name.as_str(), arg),
        ("space:join", json!({"space": "s", "since": 0}))
    );
}

#[meridian_test]
fn unknown_events_and_undecodable_payloads_are_reported_without_dropping_the_link() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.push("surprise", json!(1));
    r.push("message", json!({"seq": "nope"}));
    let problems = r
        .events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Problem(_)))
        .count();
    assert_eq!(problems, 2);
    assert_eq!(r.session.connection_state(), ConnectionState::Connected);
}

#[meridian_test]
fn a_request_without_an_answer_times_out() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.request(
        2,
        Request::History(HistoryRequest {
            space: SpaceId::new_unchecked("s"),
            before: None,
            limit: 10,
        }),
    );
    r.advance(Duration::from_secs(31));
    assert!(matches!(r.reply(2), Some(Err(Error::Timeout(_)))));
}

#[meridian_test]
fn a_connection_with_nothing_to_do_is_closed_after_the_idle_timeout() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.request(2, Request::Leave(SpaceId::new_unchecked("s")));
    let (name, ack, _) = r.take_emit();
    assert_eq!(name, "space:leave");
    r.ack(ack.unwrap(), json!({"ok": {}}));
    r.frame("2"); // keep the heartbeat alive
    r.advance(Duration::from_secs(31));
    assert_eq!(r.session.connection_state(), ConnectionState::Idle);
    assert_eq!(r.conn, None);
}

#[meridian_test]
fn backoff_grows_while_the_region_stays_down_and_a_network_change_retries_at_once() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.drop_link();
    for _ in 0..5 {
        r.advance_to_next_timeout();
        r.drop_link();
    }
    let ConnectionState::Reconnecting { attempt, .. } = r.session.connection_state() else {
        panic!("expected reconnecting")
    };
    assert_eq!(attempt, 6);
    let before = r.connects;
    r.session.network_changed(true, r.now);
    r.drain();
    assert_eq!(
        r.connects,
        before + 1,
        "online again: connect now, not after the backoff"
    );
}

#[meridian_test]
fn a_catch_up_that_passed_the_retention_window_reports_continuity_lost_and_carries_on() {
    let mut r = Region::new();
    r.joined("s", 3);
    r.drop_link();
    r.advance_to_next_timeout();
    r.accept();
    let (_, ack, arg) = r.take_emit();
    assert_eq!(arg["since"], 3);
    // The region kept only 10..=12.
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 12, "oldest_seq": 10, "epoch": "e1",
            "missed": [message("s", 10), message("s", 11), message("s", 12)], "complete": true}}),
    );
    let lost: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::ContinuityLost { space, from, to } => Some((space.as_str(), *from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec![("s", 4, Some(9))]);
    assert_eq!(r.messages(), vec![10, 11, 12]);
}

#[meridian_test]
fn a_region_that_lost_its_history_is_reported_and_followed_from_its_new_start() {
    let mut r = Region::new();
    r.request(1, Request::Join(SpaceId::new_unchecked("s")));
    r.accept();
    let (_, ack, _) = r.take_emit();
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 7, "epoch": "old", "missed": [], "complete": true}}),
    );
    r.drop_link();
    r.advance_to_next_timeout();
    r.accept();
    let (_, ack, arg) = r.take_emit();
    assert_eq!(arg, json!({"space": "s", "since": 7, "epoch": "old"}));
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 2, "epoch": "new",
            "missed": [message("s", 1), message("s", 2)], "complete": true}}),
    );
    assert!(r.events.iter().any(|e| matches!(
        e,
        SessionEvent::ContinuityLost {
            from: 8,
            to: None,
            ..
        }
    )));
    assert_eq!(
        r.messages(),
        vec![1, 2],
        "the new history is delivered, not dropped as old"
    );
    r.push("message", message("s", 3));
    assert_eq!(r.messages(), vec![1, 2, 3]);
}

#[meridian_test]
fn offline_closes_the_link_and_stops_retrying_until_the_network_is_back() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.session.network_changed(false, r.now);
    r.drain();
    assert_eq!(r.session.connection_state(), ConnectionState::Offline);
    assert_eq!(r.conn, None, "the dead socket was closed");
    assert_eq!(
        r.session.poll_timeout(),
        None,
        "no retry timer while offline"
    );
    // Work made offline waits; nothing is attempted.
    r.request(2, send("s", "k"));
    r.advance(Duration::from_secs(60));
    assert_eq!(r.connects, 1);
    r.session.network_changed(true, r.now);
    r.drain();
    assert_eq!(r.connects, 2, "back online: connect at once");
    r.accept();
    r.answer_rejoin("s");
    let (name, _, arg) = r.take_emit();
    assert_eq!((name.as_str(), &arg["key"]), ("message:send", &json!("k")));
    assert!(
        r.reply(2).is_none(),
        "a send never times out: it waits for its answer"
    );
}

#[meridian_test]
fn a_restored_cursor_makes_the_first_join_resume_instead_of_starting_at_the_head() {
    let mut r = Region::new();
    r.session.restore_cursor(
        SpaceId::new_unchecked("s"),
        Cursor {
            last_seq: 4,
            epoch: "e".into(),
        },
    );
    r.request(1, Request::Join(SpaceId::new_unchecked("s")));
    r.accept();
    let (_, ack, arg) = r.take_emit();
    assert_eq!(arg, json!({"space": "s", "since": 4, "epoch": "e"}));
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 5, "epoch": "e", "missed": [message("s", 5)], "complete": true}}),
    );
    assert_eq!(r.messages(), vec![5]);
    let cursors: Vec<_> = r.session.cursors().map(|(s, c)| (s.clone(), c)).collect();
    assert_eq!(
        cursors,
        vec![(
            SpaceId::new_unchecked("s"),
            Cursor {
                last_seq: 5,
                epoch: "e".into()
            }
        )]
    );
}

#[meridian_test]
fn a_request_the_region_never_answers_makes_the_session_reconnect_and_send_it_again() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.request(2, send("s", "k"));
    let (_, _, arg) = r.take_emit();
    assert_eq!(arg["key"], "k");
    // The region keeps pinging but never acks (a stalled handler, or a lost frame).
    let mut waited = 0;
    while r.session.connection_state() == ConnectionState::Connected {
        assert!(
            waited < 11,
            "still connected after {waited} s without an ack"
        );
        r.frame("2");
        r.advance(Duration::from_secs(1));
        waited += 1;
    }
    assert_eq!(waited, 10, "the ack timeout is 10 s");
    assert!(matches!(
        r.session.connection_state(),
        ConnectionState::Reconnecting { .. }
    ));
    r.advance_to_next_timeout();
    r.accept();
    r.answer_rejoin("s");
    let (name, _, arg) = r.take_emit();
    assert_eq!((name.as_str(), &arg["key"]), ("message:send", &json!("k")));
}

#[meridian_test]
fn a_rejected_token_parks_the_work_until_a_new_one_comes_and_then_carries_on() {
    let mut r = Region::new();
    r.session.set_renewable(true);
    r.request(1, Request::Join(SpaceId::new_unchecked("s")));
    let conn = r.conn.unwrap();
    r.session.handle_transport_open(conn, r.now);
    r.frame(HANDSHAKE);
    r.sent.clear();
    r.frame(&EioPacket::Message("4{\"message\":\"unauthorized: token expired\"}".into()).encode());
    assert!(r.events.contains(&SessionEvent::TokenRejected));
    assert!(r.reply(1).is_none(), "nothing failed");
    assert!(r.session.awaits_token());
    assert_eq!(
        r.session.poll_timeout(),
        Some(r.now + Duration::from_secs(30)),
        "no reconnect attempt until a token comes: only the join's own deadline"
    );
    r.session.set_token("fresh".into(), r.now);
    r.drain();
    let conn = r.conn.expect("reconnects with the new token");
    r.session.handle_transport_open(conn, r.now);
    r.frame(HANDSHAKE);
    let auth = r.sent.pop().unwrap();
    assert_eq!(
        auth.kind,
        SioPacketKind::Connect(Some(json!({"token": "fresh", "protocol": 1})))
    );
    // Rejected again, and again: the region means it.
    r.frame(&EioPacket::Message("4{\"message\":\"unauthorized: no\"}".into()).encode());
    r.session.set_token("fresher".into(), r.now);
    r.drain();
    let conn = r.conn.unwrap();
    r.session.handle_transport_open(conn, r.now);
    r.frame(HANDSHAKE);
    r.frame(&EioPacket::Message("4{\"message\":\"unauthorized: no\"}".into()).encode());
    let Some(Err(e)) = r.reply(1) else {
        panic!(
            "expected the join to fail after repeated rejections: {:?}",
            r.events
        )
    };
    assert_eq!(e.code(), crate::ErrorCode::Unauthorized);
}

#[meridian_test]
fn sealed_deliveries_are_opened_and_a_tampered_one_is_reported_not_delivered() {
    use crate::envelope::{Binding, KeyPair, seal};
    let keys = std::sync::Arc::new(KeyPair::generate());
    let mut r = Region::new();
    r.session.set_keys(keys.clone());
    r.request(1, Request::Join(SpaceId::new_unchecked("s")));
    let conn = r.conn.unwrap();
    r.session.handle_transport_open(conn, r.now);
    r.frame(HANDSHAKE);
    let auth = r.sent.pop().unwrap();
    let SioPacketKind::Connect(Some(auth)) = auth.kind else {
        panic!("expected the auth packet")
    };
    assert_eq!(
        auth["public_key"],
        json!(keys.public().to_base64()),
        "the region learns the key"
    );
    r.frame(&EioPacket::Message("0{\"sid\":\"s1\"}".into()).encode());
    let (_, ack, _) = r.take_emit();
    r.ack(
        ack.unwrap(),
        json!({"ok": {"space": "s", "head_seq": 0, "complete": true}}),
    );

    let region = RegionId::new_unchecked("eu-west");
    let sealed_message = |seq: u64, text: &[u8]| {
        let space = SpaceId::new_unchecked("s");
        let id = format!("m{seq}");
        let binding = Binding {
            space: &space,
            message: &id,
            region: &region,
        };
        let mut m = message("s", seq);
        m["body"] = json!("");
        m["sealed"] = serde_json::to_value(seal(keys.public(), &binding, text).unwrap()).unwrap();
        m
    };
    r.push("message", sealed_message(1, b"secret one"));
    let mut tampered = sealed_message(2, b"secret two");
    tampered["id"] = json!("m9"); // replayed under another message id
    r.push("message", tampered);
    r.push("message", sealed_message(3, b"secret three"));
    let bodies: Vec<(u64, String)> = r
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Message(m) => Some((m.seq, m.body.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        bodies,
        vec![(1, "secret one".into()), (3, "secret three".into())],
        "the altered message is not delivered, and does not block the next"
    );
    assert!(r.events.iter().any(
        |e| matches!(e, SessionEvent::Problem(err) if err.code() == crate::ErrorCode::Integrity)
    ));
}

#[meridian_test]
fn a_link_torn_down_for_a_slow_answer_gets_twice_as_long_next_time() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.request(2, send("s", "k"));
    r.take_emit();
    let mut waited = 0;
    while r.session.connection_state() == ConnectionState::Connected {
        r.frame("2");
        r.advance(Duration::from_secs(1));
        waited += 1;
    }
    assert_eq!(waited, 10);
    r.advance_to_next_timeout();
    r.accept();
    r.answer_rejoin("s");
    r.take_emit(); // the send again
    let mut waited = 0;
    while r.session.connection_state() == ConnectionState::Connected {
        assert!(waited <= 20, "still connected after {waited} s");
        r.frame("2");
        r.advance(Duration::from_secs(1));
        waited += 1;
    }
    assert_eq!(waited, 20, "the second attempt is given 20 s, not 10");
}

#[meridian_test]
fn a_join_waits_for_the_leave_of_the_same_space_that_is_on_the_wire() {
    let mut r = Region::new();
    r.joined("s", 0);
    r.request(2, Request::Leave(SpaceId::new_unchecked("s")));
    let (name, leave_ack, _) = r.take_emit();
    assert_eq!(name, "space:leave");
    r.request(3, Request::Join(SpaceId::new_unchecked("s")));
    assert!(
        r.sent.is_empty(),
        "the join waits: sent now, it could be applied first"
    );
    r.ack(leave_ack.unwrap(), json!({"ok": {}}));
    let (name, _, arg) = r.take_emit();
    assert_eq!(
        (name.as_str(), arg),
        ("space:join", json!({"space": "s"})) // a leave forgot the cursor: a fresh join
    );
}

#[meridian_test]
fn closing_the_session_answers_pending_work_but_reports_no_subscription_as_lost() {
    let mut r = Region::new();
    r.joined("s", 4);
    // A join still unanswered when the app closes.
    r.request(2, Request::Join(SpaceId::new_unchecked("t")));
    r.session.close();
    r.drain();
    assert_eq!(r.reply(2), Some(&Err(Error::Closed)));
    assert!(
        !r.events
            .iter()
            .any(|e| matches!(e, SessionEvent::SubscriptionLost { .. })),
        "the app ended its subscriptions itself: {:?}",
        r.events
    );
    assert_eq!(r.session.connection_state(), ConnectionState::Closed);
}

#[meridian_test]
fn one_send_goes_alone_several_go_as_a_batch_and_their_receipts_come_back_in_order() {
    let space = SpaceId::new_unchecked("s");
    let request = |key: &str| match send("s", key) {
        Request::Send(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        Request::sends(space.clone(), vec![request("a")]),
        send("s", "a")
    );
    let Request::SendBatch(batch) = Request::sends(space.clone(), vec![request("a"), request("b")])
    else {
        panic!("two sends go as a batch");
    };
    let keys: Vec<&str> = batch.messages.iter().map(|m| m.key.as_str()).collect();
    assert_eq!((batch.space, keys), (space, vec!["a", "b"]));

    let receipt = |seq| SendReceipt {
        message_id: MessageId::new_unchecked(format!("m{seq}")),
        seq,
        sent_at_ms: 0,
    };
    assert_eq!(Response::Sent(receipt(1)).receipts(1), Ok(vec![receipt(1)]));
    let two = vec![receipt(1), receipt(2)];
    assert_eq!(
        Response::SentBatch(two.clone()).receipts(2),
        Ok(two.clone())
    );
    assert_eq!(
        Response::SentBatch(two.clone()).receipts(3),
        Err(Response::SentBatch(two))
    );
    assert_eq!(
        Response::Sent(receipt(1)).receipts(2),
        Err(Response::Sent(receipt(1)))
    );
    assert_eq!(Response::Left.receipts(1), Err(Response::Left));
}
