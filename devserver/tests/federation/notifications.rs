//! Notifications at home: mentions, DM invites and contact presence reach the user's inbox
//! in their home region, across the relay sealed, and never to a region a policy forbids.

use std::time::Duration;

use devserver::Federation;
use meridian::ErrorCode;
use meridian::envelope::KeyPair;
use meridian::model::{Notification, PresenceStatus, SpaceId, UserId};
use meridian::protocol::Notify;
use serde_json::{Value, json};

use crate::support::{
    RawClient, connect, connect_with_key, federation, open_text, region, seal_text, token,
};

const QUIET: Duration = Duration::from_millis(400);

fn code(err: &Value) -> ErrorCode {
    serde_json::from_value(err["code"].clone()).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

fn space(id: &str) -> SpaceId {
    SpaceId::new(id).unwrap()
}

/// Connects `name` to their home region and makes the socket their inbox.
async fn inbox(fed: &Federation, name: &str, home: &str, key: Option<&KeyPair>) -> RawClient {
    let url = fed.region_socket_url(&region(home)).unwrap();
    let mut c = match key {
        Some(key) => connect_with_key(&url, &token(name), key).await,
        None => connect(&url, &token(name)).await,
    }
    .unwrap();
    assert_eq!(c.ok("inbox:subscribe", json!({})).await, json!({}));
    c
}

async fn next_notify(c: &mut RawClient) -> Notify {
    serde_json::from_value(c.event("notify").await).unwrap()
}

/// A notification delivered in the clear.
fn clear(n: &Notify) -> Notification {
    assert!(n.sealed.is_none(), "{n:?}");
    n.notification.clone().expect("a notification in the clear")
}

/// A notification sealed to `key` by `region`, opened.
fn sealed(key: &KeyPair, region: &str, n: &Notify) -> Notification {
    assert!(
        n.notification.is_none(),
        "a DS user's notification is never in the clear"
    );
    let payload = serde_json::to_value(n.sealed.as_ref().expect("sealed")).unwrap();
    let text = open_text(key, "inbox", &n.id, region, &payload).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_mention_across_regions_reaches_the_target_home_inbox_through_the_relay_sealed() {
    let fed = federation().await;
    let chloe_key = KeyPair::generate();
    let mut chloe = inbox(&fed, "chloe", "ca-central", Some(&chloe_key)).await;
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    sam.join("globex:launch").await;
    let body = "ping @chloe: the launch codes are 1234";
    let receipt = sam.send("globex:launch", "k-1", body).await;

    let n = next_notify(&mut chloe).await;
    assert_eq!(
        sealed(&chloe_key, "ca-central", &n),
        Notification::Mention {
            space: space("globex:launch"),
            message_id: serde_json::from_value(receipt["message_id"].clone()).unwrap(),
            seq: 1,
            from: user("sam"),
        }
    );
    // Another key can't read it.
    let payload = serde_json::to_value(n.sealed.as_ref().unwrap()).unwrap();
    assert!(open_text(&KeyPair::generate(), "inbox", &n.id, "ca-central", &payload).is_err());

    let relay = fed.relay_tap();
    assert_eq!((relay.frames(), relay.sealed_frames()), (1, 1));
    let carried = relay.carried(&region("us-east"), &region("ca-central"));
    assert_eq!(carried.len(), 1);
    assert!(carried[0].sealed.is_some() && !carried[0].withheld);
    assert_eq!(relay.dropped(), 0);
    for secret in [body, "launch codes", "chloe", "globex:launch"] {
        assert!(!relay.saw_text(secret), "the relay saw {secret:?}");
    }
    chloe.no_event("notify", QUIET).await;
    fed.shutdown().await;
}

#[tokio::test]
async fn a_mention_in_a_ds_space_reaches_a_dr_user_at_home_and_the_relay_never_sees_the_text() {
    let fed = federation().await;
    let mut sam = inbox(&fed, "sam", "us-east", None).await;
    let ca_id = region("ca-central");
    let ca = fed.region_socket_url(&ca_id).unwrap();
    let key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &key).await.unwrap();
    chloe.join("maple:lounge").await;
    let body = "@sam the maple secret is butter";
    let to = fed.region_public_key(&ca_id).unwrap();
    let reply = chloe
        .send_sealed(
            "maple:lounge",
            "k-1",
            seal_text(&to, "maple:lounge", "k-1", "ca-central", body),
        )
        .await;
    assert_eq!(reply["ok"]["seq"], 1, "{reply}");

    // sam is under a DR policy: his home region hands it over in the clear.
    let n = clear(&next_notify(&mut sam).await);
    assert!(
        matches!(&n, Notification::Mention { space, from, seq: 1, .. }
            if space.as_str() == "maple:lounge" && from.as_str() == "chloe"),
        "{n:?}"
    );
    let relay = fed.relay_tap();
    assert_eq!(relay.carried(&ca_id, &region("us-east")).len(), 1);
    for secret in [body, "maple secret", "maple:lounge", "chloe"] {
        assert!(!relay.saw_text(secret), "the relay saw {secret:?}");
    }
    for r in ["eu-west", "us-east", "ca-central"] {
        assert!(fed.tap(&region(r)).unwrap().never_saw_text("maple secret"));
    }
    fed.shutdown().await;
}

#[tokio::test]
async fn a_mention_whose_target_home_the_space_policy_forbids_is_withheld() {
    let fed = federation().await;
    let mut sam = inbox(&fed, "sam", "us-east", None).await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    // sam may read acme:general in eu-west, but acme's strict policy keeps what it says
    // out of us-east, sam's home.
    ana.join("acme:general").await;
    ana.send("acme:general", "k-1", "@sam look at this").await;
    sam.no_event("notify", QUIET).await;

    let relay = fed.relay_tap();
    assert_eq!(relay.frames(), 0, "nothing was carried");
    let withheld = relay.withheld();
    assert_eq!(withheld.len(), 1);
    assert_eq!(withheld[0].from, region("eu-west"));
    assert_eq!(withheld[0].to, region("us-east"));
    assert!(
        withheld[0].sealed.is_none(),
        "nothing sealed for a forbidden region"
    );
    assert!(!relay.saw_text("look at this"));
    fed.shutdown().await;
}

#[tokio::test]
async fn a_mention_at_home_is_delivered_directly_in_the_clear_or_sealed_for_a_ds_user() {
    let fed = federation().await;
    let mut ben = inbox(&fed, "ben", "eu-west", None).await;
    let leo_key = KeyPair::generate();
    let mut leo = inbox(&fed, "leo", "ca-central", Some(&leo_key)).await;

    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    ana.send("acme:general", "k-1", "thanks @ben.").await;
    let n = clear(&next_notify(&mut ben).await);
    assert!(
        matches!(&n, Notification::Mention { from, .. } if from.as_str() == "ana"),
        "{n:?}"
    );

    let ca_id = region("ca-central");
    let ca = fed.region_socket_url(&ca_id).unwrap();
    let chloe_key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &chloe_key)
        .await
        .unwrap();
    chloe.join("maple:lounge").await;
    let to = fed.region_public_key(&ca_id).unwrap();
    chloe
        .send_sealed(
            "maple:lounge",
            "k-1",
            seal_text(&to, "maple:lounge", "k-1", "ca-central", "@leo lunch?"),
        )
        .await;
    let n = sealed(&leo_key, "ca-central", &next_notify(&mut leo).await);
    assert!(
        matches!(&n, Notification::Mention { space, from, .. }
            if space.as_str() == "maple:lounge" && from.as_str() == "chloe"),
        "{n:?}"
    );
    assert!(
        fed.relay_tap().records().is_empty(),
        "the relay was not involved"
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn mentions_skip_the_sender_unknown_users_and_users_who_may_not_read_the_space() {
    let fed = federation().await;
    let chloe_key = KeyPair::generate();
    let mut chloe = inbox(&fed, "chloe", "ca-central", Some(&chloe_key)).await;
    let mut ana_inbox = inbox(&fed, "ana", "eu-west", None).await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    // chloe's policy never permits eu-west: she can't read the space, so no mention.
    ana.send(
        "acme:general",
        "k-1",
        "@ana @chloe @nobody mail me at ana@example.com",
    )
    .await;
    chloe.no_event("notify", QUIET).await;
    ana_inbox
        .no_event("notify", Duration::from_millis(50))
        .await;
    assert!(fed.relay_tap().records().is_empty());
    fed.shutdown().await;
}

#[tokio::test]
async fn an_inbox_is_only_opened_in_the_home_region_and_with_a_key_for_a_ds_user() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region("ca-central")).unwrap();
    let mut sam = connect(&ca, &token("sam")).await.unwrap();
    let err = sam.err("inbox:subscribe", json!({})).await;
    assert_eq!(code(&err), ErrorCode::Moved, "{err}");
    assert_eq!(err["region"], "us-east");
    let mut chloe = connect(&ca, &token("chloe")).await.unwrap();
    let err = chloe.err("inbox:subscribe", json!({})).await;
    assert_eq!(code(&err), ErrorCode::PolicyViolation, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("sealing key"),
        "{err}"
    );
    let err = chloe.err("inbox:subscribe", json!("please")).await;
    assert_eq!(code(&err), ErrorCode::InvalidInput, "{err}");
    fed.shutdown().await;
}

#[tokio::test]
async fn a_new_dm_invites_the_peer_at_home_once() {
    let fed = federation().await;
    let chloe_key = KeyPair::generate();
    let mut chloe = inbox(&fed, "chloe", "ca-central", Some(&chloe_key)).await;
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    let dm = sam.ok("dm:create", json!({"peer": "chloe"})).await;
    assert_eq!(dm["region"], "us-east");

    let n = sealed(&chloe_key, "ca-central", &next_notify(&mut chloe).await);
    assert_eq!(
        n,
        Notification::DmInvite {
            space: space("dm:chloe:sam"),
            from: user("sam"),
        }
    );
    // Finding the same DM again invites nobody.
    sam.ok("dm:create", json!({"peer": "chloe"})).await;
    chloe.no_event("notify", QUIET).await;
    let relay = fed.relay_tap();
    assert_eq!(
        relay
            .carried(&region("us-east"), &region("ca-central"))
            .len(),
        1
    );
    assert!(!relay.saw_text("dm:chloe:sam") && !relay.saw_text("chloe"));
    fed.shutdown().await;
}

#[tokio::test]
async fn a_presence_change_reaches_every_dm_contact_at_home_and_nobody_else() {
    let fed = federation().await;
    let chloe_key = KeyPair::generate();
    let mut chloe_inbox = inbox(&fed, "chloe", "ca-central", Some(&chloe_key)).await;
    let mut sam_inbox = inbox(&fed, "sam", "us-east", None).await;
    let mut tom_inbox = inbox(&fed, "tom", "us-east", None).await;
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    sam.ok("dm:create", json!({"peer": "chloe"})).await;
    // The invite first.
    next_notify(&mut chloe_inbox).await;

    // chloe (DS) changes presence in ca-central: sam learns it at home, in the clear.
    let ca = fed.region_socket_url(&region("ca-central")).unwrap();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &chloe_key)
        .await
        .unwrap();
    chloe.ok("presence:set", json!({"status": "away"})).await;
    assert_eq!(
        clear(&next_notify(&mut sam_inbox).await),
        Notification::ContactPresence {
            user: user("chloe"),
            status: PresenceStatus::Away,
        }
    );
    // sam changes presence in us-east: chloe learns it at home, sealed to her key.
    sam.ok("presence:set", json!({"status": "online"})).await;
    assert_eq!(
        sealed(
            &chloe_key,
            "ca-central",
            &next_notify(&mut chloe_inbox).await
        ),
        Notification::ContactPresence {
            user: user("sam"),
            status: PresenceStatus::Online,
        }
    );
    // tom shares no DM with either.
    tom_inbox.no_event("notify", QUIET).await;
    sam_inbox
        .no_event("notify", Duration::from_millis(50))
        .await;
    let relay = fed.relay_tap();
    assert_eq!(relay.frames(), 3, "the invite and two presence changes");
    assert_eq!(relay.sealed_frames(), 3);
    assert!(!relay.saw_text("chloe") && !relay.saw_text("away") && !relay.saw_text("online"));
    fed.shutdown().await;
}

#[tokio::test]
async fn an_envelope_the_target_region_can_no_longer_open_is_dropped() {
    let fed = federation().await;
    let chloe_key = KeyPair::generate();
    let mut chloe = inbox(&fed, "chloe", "ca-central", Some(&chloe_key)).await;
    fed.swap_region_key(&region("ca-central")).unwrap();
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    sam.join("globex:launch").await;
    sam.send("globex:launch", "k-1", "@chloe are you there")
        .await;
    chloe.no_event("notify", QUIET).await;
    assert_eq!(
        fed.relay_tap().frames(),
        1,
        "carried, sealed to the published key"
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn a_notification_for_a_user_without_an_inbox_socket_is_dropped() {
    let fed = federation().await;
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    sam.join("globex:launch").await;
    sam.send("globex:launch", "k-1", "@tom first").await;
    // tom opens his inbox afterwards: nothing earlier is kept for him.
    let mut tom = inbox(&fed, "tom", "us-east", None).await;
    tom.no_event("notify", QUIET).await;
    sam.send("globex:launch", "k-2", "@tom second").await;
    let n = clear(&next_notify(&mut tom).await);
    assert!(matches!(n, Notification::Mention { seq: 2, .. }), "{n:?}");
    // A closed inbox socket is forgotten.
    tom.disconnect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sam.send("globex:launch", "k-3", "@tom third").await;
    fed.shutdown().await;
}
