//! Regions: connect, join, send, receive, history, presence, typing, errors, the tap.

use std::time::Duration;

use devserver::TapKind;
use meridian::ErrorCode;
use meridian::model::{Message, SpaceId, UserId};
use meridian::protocol::JoinReply;
use serde_json::{Value, json};

use crate::support::{connect, connect_with_auth, federation, region, token};

fn code(err: &Value) -> ErrorCode {
    serde_json::from_value(err["code"].clone()).unwrap()
}

fn message(v: Value) -> Message {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn every_member_receives_every_message_once_the_sender_included() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    let joined: JoinReply = serde_json::from_value(ana.join("acme:general").await).unwrap();
    assert_eq!((joined.head_seq, joined.complete), (0, true));
    ben.join("acme:general").await;

    let receipt = ana.send("acme:general", "k-1", "hello ben").await;
    assert_eq!(receipt["seq"], 1);
    for client in [&mut ana, &mut ben] {
        let m = message(client.event("message").await);
        assert_eq!((m.seq, m.body.as_str()), (1, "hello ben"));
        assert_eq!(m.sender.as_str(), "ana");
        assert_eq!(m.id.as_str(), receipt["message_id"].as_str().unwrap());
        client.no_event("message", Duration::from_millis(200)).await;
    }
    let stored = fed.messages(&SpaceId::new("acme:general").unwrap());
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, "hello ben");
    fed.shutdown().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_stores_the_message_once() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    ana.join("acme:general").await;
    ben.join("acme:general").await;

    let first = ana.send("acme:general", "same-key", "once").await;
    let again = ana.send("acme:general", "same-key", "once").await;
    assert_eq!(first, again);
    // A retry from another connection (a reconnect) is deduplicated as well.
    let mut ana2 = connect(&eu, &token("ana")).await.unwrap();
    ana2.join("acme:general").await;
    assert_eq!(ana2.send("acme:general", "same-key", "once").await, first);

    assert_eq!(message(ben.event("message").await).seq, 1);
    ben.no_event("message", Duration::from_millis(300)).await;
    assert_eq!(
        fed.messages(&SpaceId::new("acme:general").unwrap()).len(),
        1
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn messages_sent_back_to_back_are_stored_and_delivered_in_the_order_sent() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    ben.join("acme:general").await;
    // Join and 30 sends pipelined without waiting for any ack.
    let join = ana.emit_with_ack("space:join", vec![json!({"space": "acme:general"})]);
    let ids: Vec<u64> = (0..30)
        .map(|i| {
            ana.emit_with_ack(
                "message:send",
                vec![json!({"space": "acme:general", "key": format!("k{i}"), "body": format!("m{i}")})],
            )
        })
        .collect();
    assert!(ana.ack(join).await[0].get("ok").is_some());
    for (i, id) in ids.into_iter().enumerate() {
        let reply = ana.ack(id).await;
        assert_eq!(reply[0]["ok"]["seq"], i as u64 + 1, "{reply:?}");
    }
    for i in 0..30u64 {
        let m = message(ben.event("message").await);
        assert_eq!((m.seq, m.body), (i + 1, format!("m{i}")));
    }
    fed.shutdown().await;
}

#[tokio::test]
async fn a_batch_is_checked_whole_then_stored_and_delivered_in_the_order_listed() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    ben.join("acme:general").await;
    let send = |k: &str, body: &str| json!({"space": "acme:general", "key": k, "body": body});
    // One bad send refuses the whole batch: nothing is stored.
    let err = ana
        .err(
            "message:send_batch",
            json!({"space": "acme:general", "messages": [send("b0", "fine"), send("b1", "")]}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::InvalidInput);
    let err = ana
        .err(
            "message:send_batch",
            json!({"space": "acme:general", "messages": [send("b0", "x"), {"space": "globex:launch", "key": "b2", "body": "x"}]}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::InvalidInput);
    let err = ana
        .err(
            "message:send_batch",
            json!({"space": "acme:general", "messages": []}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::InvalidInput);
    ben.no_event("message", Duration::from_millis(200)).await;

    let batch = json!({"space": "acme:general", "messages": [send("b0", "m0"), send("b1", "m1"), send("b2", "m2")]});
    let reply = ana.ok("message:send_batch", batch.clone()).await;
    let seqs: Vec<u64> = reply["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    for i in 0..3u64 {
        let m = message(ben.event("message").await);
        assert_eq!((m.seq, m.body), (i + 1, format!("m{i}")));
    }
    // The same batch again (a resend after a lost ack) finds every send by its key.
    assert_eq!(ana.ok("message:send_batch", batch).await, reply);
    ben.no_event("message", Duration::from_millis(300)).await;
    assert_eq!(
        fed.messages(&SpaceId::new("acme:general").unwrap()).len(),
        3
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn joining_with_since_catches_up_on_what_was_missed() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    for i in 1..=3 {
        ana.send("acme:general", &format!("k{i}"), &format!("m{i}"))
            .await;
    }
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    let reply: JoinReply = serde_json::from_value(
        ben.ok("space:join", json!({"space": "acme:general", "since": 1}))
            .await,
    )
    .unwrap();
    assert_eq!(reply.head_seq, 3);
    assert!(reply.complete);
    let seqs: Vec<u64> = reply.missed.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![2, 3]);
    // Live messages follow the catch-up.
    ana.send("acme:general", "k4", "m4").await;
    assert_eq!(message(ben.event("message").await).seq, 4);
    fed.shutdown().await;
}

#[tokio::test]
async fn history_pages_backwards_and_returns_oldest_first() {
    let fed = federation().await;
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    sam.join("globex:launch").await;
    for i in 1..=5 {
        sam.send("globex:launch", &format!("k{i}"), &format!("m{i}"))
            .await;
    }
    let seqs = |v: Value| -> Vec<u64> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let newest = sam
        .ok("history", json!({"space": "globex:launch", "limit": 2}))
        .await;
    assert_eq!(seqs(newest), vec![4, 5]);
    let older = sam
        .ok(
            "history",
            json!({"space": "globex:launch", "before": 4, "limit": 10}),
        )
        .await;
    assert_eq!(seqs(older), vec![1, 2, 3]);
    // History needs access, not a join.
    let mut tom = connect(&us, &token("tom")).await.unwrap();
    let page = tom
        .ok("history", json!({"space": "globex:launch", "limit": 1000}))
        .await;
    assert_eq!(seqs(page).len(), 5);
    fed.shutdown().await;
}

#[tokio::test]
async fn an_unknown_token_is_refused_at_connect() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let refused = connect(&eu, "stolen-token").await.err().unwrap();
    assert!(refused.starts_with("unauthorized"), "{refused}");
    let refused = connect_with_auth(&eu, None).await.err().unwrap();
    assert!(refused.starts_with("unauthorized"), "{refused}");
    let refused = connect_with_auth(&eu, Some(json!({"token": 42})))
        .await
        .err()
        .unwrap();
    assert!(refused.starts_with("unauthorized"), "{refused}");
    let tap = fed.tap(&region("eu-west")).unwrap();
    assert_eq!(tap.connects().len(), 3);
    assert!(tap.connects().iter().all(|r| r.user.is_none()
        && r.kind
            == TapKind::Connect {
                accepted: false,
                refused_with: Some(ErrorCode::Unauthorized)
            }));
    fed.shutdown().await;
}

#[tokio::test]
async fn a_user_is_refused_at_connect_by_a_region_their_policy_forbids() {
    let fed = federation().await;
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let refused = connect(&us, &token("ana")).await.err().unwrap();
    assert!(refused.starts_with("policy_violation"), "{refused}");
    assert!(refused.contains("us-east"), "{refused}");
    // A whitelisted region is fine: sam (us-open) may connect to eu-west.
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    connect(&eu, &token("sam")).await.unwrap();

    let tap = fed.tap(&region("us-east")).unwrap();
    let ana = UserId::new("ana").unwrap();
    let connects = tap.connects();
    assert_eq!(connects.len(), 1);
    assert_eq!(connects[0].user.as_ref(), Some(&ana));
    assert_eq!(
        connects[0].kind,
        TapKind::Connect {
            accepted: false,
            refused_with: Some(ErrorCode::PolicyViolation)
        }
    );
    assert!(tap.events_from(&ana).is_empty());
    fed.shutdown().await;
}

#[tokio::test]
async fn entering_a_space_the_policy_forbids_is_refused_and_recorded_in_the_tap() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let err = ana
        .err("space:join", json!({"space": "globex:launch"}))
        .await;
    assert_eq!(code(&err), ErrorCode::PolicyViolation);
    assert_eq!(err["region"], "us-east");
    // And nothing can be sent there either.
    let err = ana
        .err(
            "message:send",
            json!({"space": "globex:launch", "key": "k", "body": "leak"}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::PolicyViolation);

    let ana_id = UserId::new("ana").unwrap();
    let events = fed.tap(&region("eu-west")).unwrap().events_from(&ana_id);
    let names: Vec<_> = events.iter().filter_map(|r| r.event_name()).collect();
    assert_eq!(names, vec!["space:join", "message:send"]);
    assert_eq!(events[0].payload().unwrap()["space"], "globex:launch");
    for other in ["us-east", "ca-central"] {
        let tap = fed.tap(&region(other)).unwrap();
        assert!(tap.records().is_empty(), "{other}: {:?}", tap.records());
        assert!(!tap.saw_text("leak"));
    }
    assert!(
        fed.messages(&SpaceId::new("globex:launch").unwrap())
            .is_empty()
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn a_space_housed_in_another_region_answers_moved() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut sam = connect(&eu, &token("sam")).await.unwrap();
    let err = sam
        .err("space:join", json!({"space": "globex:launch"}))
        .await;
    assert_eq!(code(&err), ErrorCode::Moved);
    assert_eq!(err["region"], "us-east");
    let err = sam
        .err(
            "message:send",
            json!({"space": "globex:launch", "key": "k", "body": "hi"}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::Moved);
    let err = sam.err("space:join", json!({"space": "nowhere"})).await;
    assert_eq!(code(&err), ErrorCode::NotFound);
    let err = sam
        .err(
            "message:send",
            json!({"space": "nowhere", "key": "k", "body": "hi"}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::NotFound);
    fed.shutdown().await;
}

#[tokio::test]
async fn malformed_payloads_and_unknown_events_get_invalid_input() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    for (name, payload) in [
        ("space:join", json!({"space": 42})),
        ("space:join", json!({"space": "bad id with spaces"})),
        ("space:join", json!("acme:general")),
        ("message:send", json!({"space": "acme:general"})),
        ("history", json!({"space": "acme:general", "limit": -1})),
        ("history", json!({"space": "acme:general", "limit": 0})),
        ("presence:set", json!({"status": "dancing"})),
        ("dm:create", json!(null)),
        ("no:such:event", json!({})),
    ] {
        let err = ana.err(name, payload.clone()).await;
        assert_eq!(
            code(&err),
            ErrorCode::InvalidInput,
            "{name} {payload}: {err}"
        );
    }
    // Zero or two arguments are refused too.
    for args in [vec![], vec![json!({"space": "acme:general"}), json!(1)]] {
        let id = ana.emit_with_ack("space:join", args);
        let reply = ana.ack(id).await;
        assert_eq!(reply.len(), 1);
        assert_eq!(code(&reply[0]["error"]), ErrorCode::InvalidInput);
    }
    // Without an ack, the error comes back as an `error` event.
    ana.emit("space:join", json!({"space": []}));
    let err = ana.event("error").await;
    assert_eq!(code(&err), ErrorCode::InvalidInput);
    ana.emit("whatever", json!(1));
    assert_eq!(code(&ana.event("error").await), ErrorCode::InvalidInput);
    // The connection survived all of it.
    ana.join("acme:general").await;
    // Every event reached the tap, unknown ones included.
    let tap = fed.tap(&region("eu-west")).unwrap();
    let ana_id = UserId::new("ana").unwrap();
    assert!(
        tap.events_from(&ana_id)
            .iter()
            .any(|r| r.event_name() == Some("no:such:event"))
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn an_empty_or_oversized_body_is_refused_and_sending_needs_access_not_a_join() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    // A space housed elsewhere is refused as a join would be...
    let err = ana
        .err(
            "message:send",
            json!({"space": "globex:launch", "key": "k0", "body": "hi"}),
        )
        .await;
    assert_ne!(code(&err), ErrorCode::InvalidInput, "{err}");
    let err = ana
        .err(
            "message:send",
            json!({"space": "acme:general", "key": "k", "body": "   "}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::InvalidInput);
    let big = "x".repeat(meridian::model::MAX_BODY_BYTES + 1);
    let err = ana
        .err(
            "message:send",
            json!({"space": "acme:general", "key": "k", "body": big}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::InvalidInput);
    let general = SpaceId::new("acme:general").unwrap();
    assert!(fed.messages(&general).is_empty());
    // ...and a good send is stored without the socket ever joining.
    let ack = ana
        .ok(
            "message:send",
            json!({"space": "acme:general", "key": "k1", "body": "posted without following"}),
        )
        .await;
    assert_eq!(ack["seq"], 1, "{ack}");
    assert_eq!(fed.messages(&general).len(), 1);
    fed.shutdown().await;
}

#[tokio::test]
async fn presence_and_typing_reach_the_other_members_but_not_the_sender() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    ana.join("acme:general").await;
    ben.join("acme:general").await;

    ana.ok("presence:set", json!({"status": "away"})).await;
    let p = ben.event("presence").await;
    assert_eq!(
        p,
        json!({"user": "ana", "status": "away", "space": "acme:general"})
    );

    // The client cannot speak for someone else: the region sets `user`.
    ana.emit(
        "typing",
        json!({"space": "acme:general", "typing": true, "user": "ben"}),
    );
    let t = ben.event("typing").await;
    assert_eq!(
        t,
        json!({"space": "acme:general", "user": "ana", "typing": true})
    );

    ana.no_event("presence", Duration::from_millis(200)).await;
    ana.no_event("typing", Duration::from_millis(10)).await;

    // When ana's last socket goes, ben sees her offline.
    ana.disconnect();
    let p = ben.event("presence").await;
    assert_eq!(
        p,
        json!({"user": "ana", "status": "offline", "space": "acme:general"})
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn garbage_frames_end_only_the_connection_that_sent_them() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    ben.join("acme:general").await;
    for frame in [
        "4garbage",
        "42[1]",
        "42[\"unterminated",
        "451-[\"x\",{\"_placeholder\":true,\"num\":0}]",
        "9",
        "",
    ] {
        let mut ana = connect(&eu, &token("ana")).await.unwrap();
        ana.send_frame(frame);
        // Whatever the region does with the frame (drop it or the connection), it answers
        // the next well-formed request or closes cleanly, and never takes others down.
        let id = ana.emit_with_ack("space:join", vec![json!({"space": "acme:general"})]);
        if !ana.closed_within(Duration::from_millis(300)).await {
            assert!(ana.ack(id).await[0].get("ok").is_some(), "{frame:?}");
        }
    }
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    ana.send("acme:general", "k", "still up").await;
    assert_eq!(ben.event("message").await["body"], "still up");
    fed.shutdown().await;
}
