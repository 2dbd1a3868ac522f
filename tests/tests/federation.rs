//! The SDK against a real federation (the devserver) over real sockets on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use meridian::model::{MAX_BODY_BYTES, Message, RegionId, SpaceId, UserId};
use meridian::{Client, ClientConfig, ConnectionState, ErrorCode, Event};
use meridian_tests::demo::{Events, client, federation};

fn space(id: &str) -> SpaceId {
    SpaceId::new(id).unwrap()
}

fn region(id: &str) -> RegionId {
    RegionId::new(id).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

/// Collects `n` messages, failing after `secs` with what arrived so far.
async fn messages(events: &mut Events, n: usize, secs: u64) -> Vec<Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(secs));
    tokio::pin!(deadline);
    while got.len() < n {
        tokio::select! {
            e = events.next() => match e {
                Some(Event::MessageReceived(m)) => got.push(m),
                Some(_) => {}
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    assert_eq!(
        got.len(),
        n,
        "expected {n} messages, got {}: {got:?}",
        got.len()
    );
    got
}

/// Waits until nothing more arrives for a while; returns the extra messages.
async fn quiet(events: &mut Events, ms: u64) -> Vec<Message> {
    let mut extra = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(ms), events.next()).await {
        if let Event::MessageReceived(m) = e {
            extra.push(m);
        }
    }
    extra
}

fn assert_exactly_once_in_order(got: &[Message], space: &SpaceId, expected_bodies: &[String]) {
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs must be consecutive: {seqs:?}"
    );
    assert!(got.iter().all(|m| &m.space == space));
    let mut bodies: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
    let mut expected = expected_bodies.to_vec();
    bodies.sort();
    expected.sort();
    assert_eq!(bodies, expected, "every message once");
}

#[tokio::test]
async fn a_message_sent_to_a_space_in_another_region_arrives_exactly_once_to_every_member_in_every_region()
 {
    let fed = federation().await;
    // globex:launch is housed in us-east. Sam and Tom are homed there, Chloe in ca-central.
    let launch = space("globex:launch");
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    let (tom, mut tom_ev) = client(&fed, "tom").await;
    let (chloe, mut chloe_ev) = client(&fed, "chloe").await;
    for c in [&sam, &tom, &chloe] {
        c.join_space(&launch).await.unwrap();
    }
    // Two senders in two home regions, interleaved, concurrently.
    let n = 15;
    let from_chloe = async {
        for i in 0..n {
            chloe
                .send_message(&launch, &format!("chloe {i}"))
                .await
                .unwrap();
        }
    };
    let from_sam = async {
        for i in 0..n {
            sam.send_message(&launch, &format!("sam {i}"))
                .await
                .unwrap();
        }
    };
    tokio::join!(from_chloe, from_sam);
    let expected: Vec<String> = (0..n)
        .flat_map(|i| [format!("chloe {i}"), format!("sam {i}")])
        .collect();
    for (name, ev) in [
        ("sam", &mut sam_ev),
        ("tom", &mut tom_ev),
        ("chloe", &mut chloe_ev),
    ] {
        let got = messages(ev, 2 * n, 10).await;
        assert_exactly_once_in_order(&got, &launch, &expected);
        // Each sender's own messages keep the order they were sent in.
        for sender in ["chloe", "sam"] {
            let own: Vec<&str> = got
                .iter()
                .filter(|m| m.sender.as_str() == sender)
                .map(|m| m.body.as_str())
                .collect();
            let want: Vec<String> = (0..n).map(|i| format!("{sender} {i}")).collect();
            assert_eq!(own, want, "{name} sees {sender}'s messages in order");
        }
        assert!(quiet(ev, 300).await.is_empty(), "{name} got duplicates");
    }
    assert_eq!(fed.messages(&launch).len(), 2 * n, "stored once each");
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_region_restarted_mid_test_is_reconnected_and_resubscribed_without_the_app_doing_anything()
 {
    let fed = federation().await;
    let general = space("acme:general"); // eu-west
    let (ana, mut ana_ev) = client(&fed, "ana").await;
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    ana.join_space(&general).await.unwrap();
    sam.join_space(&general).await.unwrap();
    sam.send_message(&general, "before")
        .await
        .unwrap()
        .await
        .unwrap();
    messages(&mut ana_ev, 1, 5).await;

    fed.stop_region(&region("eu-west")).await.unwrap();
    // Sent while the region is down: held, then delivered once it is back.
    let pending = {
        let sam = sam.clone();
        let general = general.clone();
        tokio::spawn(async move { sam.send_message(&general, "during").await?.await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    fed.start_region(&region("eu-west")).await.unwrap();
    let receipt = tokio::time::timeout(Duration::from_secs(15), pending)
        .await
        .expect("the held send completes after the restart")
        .unwrap()
        .unwrap();
    assert_eq!(receipt.seq, 2);
    sam.send_message(&general, "after")
        .await
        .unwrap()
        .await
        .unwrap();

    let got = messages(&mut ana_ev, 2, 10).await;
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["during", "after"]);
    assert!(quiet(&mut ana_ev, 300).await.is_empty());

    let mut states = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), sam_ev.next()).await {
        if let Event::ConnectionChanged { region, state } = e {
            states.push((region, state));
        }
    }
    assert!(
        states
            .iter()
            .any(|(r, s)| r.as_str() == "eu-west"
                && matches!(s, ConnectionState::Reconnecting { .. })),
        "the app was told about the outage: {states:?}"
    );
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_join_the_policy_forbids_is_refused_before_any_frame_reaches_that_region() {
    let fed = federation().await;
    let (ana, mut ana_ev) = client(&fed, "ana").await; // eu-strict
    let err = ana.join_space(&space("globex:launch")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyViolation, "{err}");
    assert!(err.to_string().contains("us-east"), "{err}");
    let tap = fed.tap(&region("us-east")).unwrap();
    assert!(
        tap.records().is_empty(),
        "nothing may reach us-east: {:?}",
        tap.records()
    );
    let blocked = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(e) = ana_ev.next().await {
            if let Event::PolicyBlocked { region, .. } = e {
                return region;
            }
        }
        panic!("stream ended")
    })
    .await
    .expect("a PolicyBlocked event");
    assert_eq!(blocked.as_str(), "us-east");
    // Sending there is refused the same way.
    let err = ana
        .send_message(&space("globex:launch"), "hi")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyViolation);
    assert!(tap.records().is_empty());
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_dm_the_policy_forbids_is_refused_before_any_frame_reaches_a_region() {
    let fed = federation().await;
    let (ana, _) = client(&fed, "ana").await; // eu-strict
    let (chloe, _) = client(&fed, "chloe").await; // ca-central, may use us-east
    for (from, to) in [(&ana, "chloe"), (&chloe, "ana")] {
        let err = from.create_dm(&user(to)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::PolicyViolation, "{err}");
    }
    // No DM request reached any region (each user's home connection, for notifications,
    // is all there is; the audit below checks that no region saw a forbidden user).
    for r in ["eu-west", "us-east", "ca-central"] {
        let records = fed.tap(&region(r)).unwrap().records();
        assert!(
            records
                .iter()
                .all(|rec| rec.event_name() != Some("dm:create")),
            "{r} received {records:?}"
        );
    }
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_dm_both_policies_permit_is_created_and_carries_messages() {
    let fed = federation().await;
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    let (chloe, mut chloe_ev) = client(&fed, "chloe").await;
    let dm = sam.create_dm(&user("chloe")).await.unwrap();
    assert_eq!(dm.region.as_str(), "us-east");
    let again = chloe.create_dm(&user("sam")).await.unwrap();
    assert_eq!(again.space, dm.space, "one DM per pair");
    sam.join_space(&dm.space).await.unwrap();
    chloe.join_space(&dm.space).await.unwrap();
    chloe
        .send_message(&dm.space, "hi sam")
        .await
        .unwrap()
        .await
        .unwrap();
    for ev in [&mut sam_ev, &mut chloe_ev] {
        assert_eq!(messages(ev, 1, 5).await[0].body, "hi sam");
    }
    // A third user may not read it.
    let (tom, _) = client(&fed, "tom").await;
    let err = tom.join_space(&dm.space).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthorized, "{err}");
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn history_returns_pages_oldest_first() {
    let fed = federation().await;
    let (sam, _) = client(&fed, "sam").await;
    let random = space("globex:random");
    for i in 1..=5 {
        sam.send_message(&random, &format!("m{i}"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let newest = sam.history(&random, None, 2).await.unwrap();
    assert_eq!(newest.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
    let older = sam.history(&random, Some(4), 10).await.unwrap();
    assert_eq!(older.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let err = sam.history(&random, None, 0).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn presence_and_typing_reach_the_other_members() {
    let fed = federation().await;
    let launch = space("globex:launch");
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    let (tom, _) = client(&fed, "tom").await;
    sam.join_space(&launch).await.unwrap();
    tom.join_space(&launch).await.unwrap();
    tom.set_presence(meridian::model::PresenceStatus::Away)
        .await
        .unwrap();
    tom.typing(&launch, true).await.unwrap();
    let mut seen: HashMap<&str, bool> = HashMap::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = sam_ev.next().await {
            match e {
                Event::PresenceChanged(p) if p.user.as_str() == "tom" => {
                    seen.insert("presence", true);
                }
                Event::Typing(t) if t.user.as_ref().map(|u| u.as_str()) == Some("tom") => {
                    seen.insert("typing", true);
                }
                _ => {}
            }
            if seen.len() == 2 {
                break;
            }
        }
    })
    .await;
    assert_eq!(seen.len(), 2, "sam saw {seen:?}");
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn bad_input_from_the_app_gets_a_typed_error_and_sends_nothing() {
    let fed = federation().await;
    let (sam, _) = client(&fed, "sam").await;
    let launch = space("globex:launch");
    sam.join_space(&launch).await.unwrap();
    let tap = fed.tap(&region("us-east")).unwrap();
    let before = tap.records().len();
    for body in [String::new(), "   ".into(), "x".repeat(MAX_BODY_BYTES + 1)] {
        let err = sam.send_message(&launch, &body).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    }
    assert_eq!(tap.records().len(), before, "nothing was sent");
    let err = sam.join_space(&space("globex:nope")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    assert_eq!(
        SpaceId::new("bad space").unwrap_err().code(),
        ErrorCode::InvalidInput
    );
    let err = sam.create_dm(&user("nobody")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    let err = sam.create_dm(&user("sam")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    // The client still works.
    sam.send_message(&launch, "still here")
        .await
        .unwrap()
        .await
        .unwrap();
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_bad_token_or_a_bad_directory_url_is_refused_with_a_typed_error() {
    let fed = federation().await;
    let err = Client::connect_native(fed.client_config("wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthorized, "{err}");
    let err = Client::connect_native(fed.client_config(""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    let err = Client::connect_native(
        ClientConfig::new("ftp://nowhere", "sam-token").with_federation_keys(fed.federation_keys()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    // Nothing listens on port 9 of loopback.
    let err = Client::connect_native(
        ClientConfig::new("http://127.0.0.1:9", "sam-token")
            .with_federation_keys(fed.federation_keys()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::DirectoryUnavailable, "{err}");
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_directory_that_answers_500_or_garbage_gives_directory_unavailable() {
    let fed = federation().await;
    for fault in [
        devserver::DirectoryFault::Status500,
        devserver::DirectoryFault::Garbage,
    ] {
        fed.set_directory_fault(Some(fault));
        let err = Client::connect_native(fed.client_config("sam-token"))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::DirectoryUnavailable,
            "{fault:?}: {err}"
        );
    }
    fed.set_directory_fault(None);
    let (sam, _) = client(&fed, "sam").await;
    sam.join_space(&space("globex:launch")).await.unwrap();
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}
