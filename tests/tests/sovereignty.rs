//! Residency and sovereignty end to end: sealed payloads, the signed federation document,
//! notifications through the relay, and what the client refuses from a hostile directory
//! or region. Every test ends with the residency audit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Duration;

use devserver::DocumentFault;
use futures::StreamExt;
use meridian::model::{Notification, RegionId, SpaceId, UserId};
use meridian::{Client, ErrorCode, Event};
use meridian_tests::demo::{Events, client, federation};
use meridian_tests::residency::audit;

fn id<T: TryFrom<&'static str>>(s: &'static str) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(s).unwrap()
}

async fn next<T>(events: &mut Events, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.next().await.expect("the stream ended");
            if let Some(found) = pick(e) {
                return found;
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

#[tokio::test]
async fn a_data_sovereignty_space_is_sealed_from_device_to_device() {
    let fed = federation().await;
    let lounge: SpaceId = id("maple:lounge"); // ca-central, owned by maple (DS)
    let (chloe, mut chloe_ev) = client(&fed, "chloe").await;
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    chloe.join_space(&lounge).await.unwrap();
    sam.join_space(&lounge).await.unwrap();
    let text = "quarterly numbers: 4.2M in Quebec";
    sam.send_message(&lounge, text)
        .await
        .unwrap()
        .await
        .unwrap();
    for events in [&mut chloe_ev, &mut sam_ev] {
        let m = next(events, |e| match e {
            Event::MessageReceived(m) => Some(m),
            _ => None,
        })
        .await;
        assert_eq!(
            m.body, text,
            "each member reads it, opened with its own key"
        );
        assert!(m.sealed.is_none());
    }
    let ca = fed.tap(&id("ca-central")).unwrap();
    assert!(
        ca.never_saw_text(text),
        "the region only ever received it sealed"
    );
    assert!(ca.sealed_frames() >= 1);
    assert_eq!(
        fed.messages(&lounge)[0].body,
        text,
        "stored readable, at rest where permitted"
    );
    audit(&fed, &[lounge]).assert_clean("ds-space");
}

#[tokio::test]
async fn a_directory_that_points_a_space_at_a_forbidden_region_is_not_followed() {
    let fed = federation().await;
    let general: SpaceId = id("acme:general"); // really eu-west
    fed.misdirect_space(&general, Some(id("us-east")));
    let (ana, _) = client(&fed, "ana").await; // eu-strict
    let err = ana.join_space(&general).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyViolation, "{err}");
    let err = ana.send_message(&general, "hello").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyViolation, "{err}");
    assert!(
        fed.tap(&id("us-east")).unwrap().records().is_empty(),
        "nothing reached the region the directory pointed at"
    );
    audit(&fed, &[general]).assert_clean("misdirected-space");
}

#[tokio::test]
async fn a_region_whose_key_was_swapped_gets_nothing_it_could_read_and_the_send_fails_with_integrity()
 {
    let fed = federation().await;
    let lounge: SpaceId = id("maple:lounge");
    let (chloe, mut events) = client(&fed, "chloe").await;
    chloe.join_space(&lounge).await.unwrap();
    fed.swap_region_key(&id("ca-central")).unwrap();
    let pending = chloe
        .send_message(&lounge, "sealed to a key nobody holds")
        .await
        .unwrap();
    let err = pending.await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Integrity, "{err}");
    let failed = next(&mut events, |e| match e {
        Event::SendFailed { error, .. } => Some(error.code()),
        _ => None,
    })
    .await;
    assert_eq!(failed, ErrorCode::Integrity);
    assert!(fed.messages(&lounge).is_empty(), "nothing was stored");
    audit(&fed, &[lounge]).assert_clean("swapped-key");
}

#[tokio::test]
async fn bad_federation_documents_are_refused_reported_and_the_last_good_one_keeps_serving() {
    let fed = federation().await;
    let mut config = fed.client_config("sam-token");
    config.directory.document_ttl = Duration::ZERO; // ask the directory every time
    let sam = Client::connect_native(config).await.unwrap();
    let mut events: Events = Box::pin(sam.events());
    let launch: SpaceId = id("globex:launch");
    sam.join_space(&launch).await.unwrap();
    for fault in [
        DocumentFault::Forged,
        DocumentFault::Tampered,
        DocumentFault::Expired,
        DocumentFault::Rollback,
    ] {
        fed.set_document_fault(Some(fault));
        // The client still works from the last good document...
        sam.send_message(&launch, &format!("still here despite {fault:?}"))
            .await
            .unwrap()
            .await
            .unwrap();
        // ...and says why it refused the new one.
        let error = next(&mut events, |e| match e {
            Event::FederationDocumentRefused { error } => Some(error),
            _ => None,
        })
        .await;
        assert_eq!(error.code(), ErrorCode::Integrity, "{fault:?}: {error}");
    }
    fed.set_document_fault(None);
    // A new client can't even start from a bad document.
    fed.set_document_fault(Some(DocumentFault::Forged));
    let err = Client::connect_native(fed.client_config("tom-token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Integrity, "{err}");
    fed.set_document_fault(None);
    audit(&fed, &[launch]).assert_clean("documents");
}

#[tokio::test]
async fn the_signing_key_rotates_without_an_app_update() {
    let fed = federation().await;
    let mut config = fed.client_config("sam-token");
    config.directory.document_ttl = Duration::ZERO;
    let sam = Client::connect_native(config).await.unwrap();
    let mut events: Events = Box::pin(sam.events());
    let launch: SpaceId = id("globex:launch");
    fed.begin_key_rotation().unwrap();
    sam.join_space(&launch).await.unwrap(); // learns the announced key
    fed.finish_key_rotation();
    sam.send_message(&launch, "signed by the new key now")
        .await
        .unwrap()
        .await
        .unwrap();
    let refused = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Some(Event::FederationDocumentRefused { error }) = events.next().await {
                return error;
            }
        }
    })
    .await;
    assert!(
        refused.is_err(),
        "the rotated document was accepted: {refused:?}"
    );
    // A client pinned only to the old key, that never saw the announcement, refuses it.
    let err = Client::connect_native(
        meridian::ClientConfig::new(fed.directory_url(), "tom-token").with_federation_keys(vec![
            meridian::trust::DocumentSigner::from_seed("federation-0", &[7; 32]).public(),
        ]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Integrity);
    audit(&fed, &[launch]).assert_clean("rotation");
}

#[tokio::test]
async fn a_mention_reaches_the_user_at_home_through_the_relay_which_sees_nothing_readable() {
    let fed = federation().await;
    let launch: SpaceId = id("globex:launch"); // us-east; globex permits ca-central
    let (_chloe, mut chloe_ev) = client(&fed, "chloe").await; // home ca-central
    let (sam, _) = client(&fed, "sam").await;
    sam.join_space(&launch).await.unwrap();
    let text = "@chloe can you check the launch checklist?";
    let receipt = sam
        .send_message(&launch, text)
        .await
        .unwrap()
        .await
        .unwrap();
    let mention = next(&mut chloe_ev, |e| match e {
        Event::Notification(n @ Notification::Mention { .. }) => Some(n),
        _ => None,
    })
    .await;
    assert_eq!(
        mention,
        Notification::Mention {
            space: launch.clone(),
            message_id: receipt.message_id,
            seq: receipt.seq,
            from: id::<UserId>("sam"),
        }
    );
    let relay = fed.relay_tap();
    assert!(
        !relay
            .carried(&id::<RegionId>("us-east"), &id::<RegionId>("ca-central"))
            .is_empty(),
        "the mention crossed regions through the relay"
    );
    assert!(!relay.saw_text(text) && !relay.saw_text("chloe"));
    // A DM invite comes home the same way.
    sam.create_dm(&id("chloe")).await.unwrap();
    let invite = next(&mut chloe_ev, |e| match e {
        Event::Notification(Notification::DmInvite { from, .. }) => Some(from),
        _ => None,
    })
    .await;
    assert_eq!(invite.as_str(), "sam");
    audit(&fed, &[launch]).assert_clean("relay");
}
