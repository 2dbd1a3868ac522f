//! Delivery across restarts: the persistent outbox and resumable cursors, against the
//! devserver over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use devserver::{Federation, FederationConfig};
use futures::{Stream, StreamExt};
use meridian::model::{Message, RegionId, SpaceId};
use meridian::outbox::SendStatus;
use meridian::store::FileStore;
use meridian::{Client, ErrorCode, Event};

type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meridian-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn client(fed: &Federation, user: &str, store: Option<&PathBuf>) -> (Client, Events) {
    let mut config = fed.client_config(format!("{user}-token"));
    if let Some(dir) = store {
        config = config.with_store(Arc::new(FileStore::new(dir)));
    }
    let client = Client::connect_native(config).await.unwrap();
    let events = Box::pin(client.events());
    (client, events)
}

async fn messages(events: &mut Events, n: usize) -> Vec<Message> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while got.len() < n {
            match events.next().await {
                Some(Event::MessageReceived(m)) => got.push(m),
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    assert_eq!(got.len(), n, "expected {n} messages, got {got:?}");
    got
}

async fn nothing_more(events: &mut Events) {
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), events.next()).await {
        assert!(
            !matches!(e, Event::MessageReceived(_)),
            "unexpected extra delivery: {e:?}"
        );
    }
}

fn bodies(got: &[Message]) -> Vec<&str> {
    got.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test]
async fn an_app_that_listens_late_still_hears_how_its_restored_sends_went() {
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let general = SpaceId::new("acme:general").unwrap();
    let dir = scratch("late-listener");
    let keys = {
        let (sam, _) = client(&fed, "sam", Some(&dir)).await;
        sam.join_space(&general).await.unwrap();
        sam.network_changed(false);
        let mut keys = Vec::new();
        for i in 1..=3 {
            let pending = sam.send_message(&general, &format!("restored {i}")).await;
            keys.push(pending.unwrap().key().clone());
        }
        sam.disconnect().await;
        keys
    };

    // The next run sends them as soon as it connects; the app subscribes a while later.
    let mut config = fed.client_config("sam-token".to_owned());
    config = config.with_store(Arc::new(FileStore::new(&dir)));
    let sam = Client::connect_native(config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        sam.pending_sends().await.unwrap().is_empty(),
        "already sent"
    );
    let mut events = sam.events();
    let mut heard = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while heard.len() < keys.len() {
            if let Some(Event::MessageSent { key, .. }) = events.next().await {
                heard.push(key);
            }
        }
    })
    .await;
    assert_eq!(
        heard, keys,
        "the first listener hears the sends' outcomes, in order"
    );
    meridian_tests::residency_check!(fed);
}

#[tokio::test]
async fn sends_pending_when_the_client_stops_are_delivered_exactly_once_by_the_next_run() {
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let general = SpaceId::new("acme:general").unwrap();
    let (ana, mut ana_ev) = client(&fed, "ana", None).await;
    ana.join_space(&general).await.unwrap();
    let dir = scratch("outbox");

    // Sam's first run: the region is down, so his sends wait in the outbox on disk.
    {
        let (sam, _) = client(&fed, "sam", Some(&dir)).await;
        sam.join_space(&general).await.unwrap();
        fed.stop_region(&RegionId::new("eu-west").unwrap())
            .await
            .unwrap();
        for i in 1..=5 {
            sam.send_message(&general, &format!("offline {i}"))
                .await
                .unwrap();
        }
        let pending = sam.pending_sends().await.unwrap();
        assert_eq!(pending.len(), 5);
        assert!(pending.iter().all(|e| e.status == SendStatus::Queued));
        sam.disconnect().await;
    }
    fed.start_region(&RegionId::new("eu-west").unwrap())
        .await
        .unwrap();

    // The second run finds them and sends them; nothing is stored twice.
    let (sam, mut sam_ev) = client(&fed, "sam", Some(&dir)).await;
    let mut sent = 0;
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while sent < 5 {
            if let Some(Event::MessageSent { .. }) = sam_ev.next().await {
                sent += 1;
            }
        }
    })
    .await;
    assert_eq!(sent, 5, "the next run reports every leftover send as sent");
    let got = messages(&mut ana_ev, 5).await;
    assert_eq!(
        bodies(&got),
        [
            "offline 1",
            "offline 2",
            "offline 3",
            "offline 4",
            "offline 5"
        ]
    );
    nothing_more(&mut ana_ev).await;
    assert_eq!(fed.messages(&general).len(), 5, "stored once each");
    assert!(sam.pending_sends().await.unwrap().is_empty());
    sam.disconnect().await;

    // A third run has nothing left to send.
    let (sam, _) = client(&fed, "sam", Some(&dir)).await;
    assert!(sam.pending_sends().await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_restarted_client_resumes_each_space_where_it_left_off() {
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let launch = SpaceId::new("globex:launch").unwrap();
    let (sam, _) = client(&fed, "sam", None).await;
    let dir = scratch("cursors");
    {
        let (tom, mut tom_ev) = client(&fed, "tom", Some(&dir)).await;
        tom.join_space(&launch).await.unwrap();
        for i in 1..=3 {
            sam.send_message(&launch, &format!("seen {i}"))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        messages(&mut tom_ev, 3).await;
        tom.disconnect().await;
    }
    for i in 1..=4 {
        sam.send_message(&launch, &format!("missed {i}"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let (tom, mut tom_ev) = client(&fed, "tom", Some(&dir)).await;
    tom.join_space(&launch).await.unwrap();
    let got = messages(&mut tom_ev, 4).await;
    assert_eq!(
        bodies(&got),
        ["missed 1", "missed 2", "missed 3", "missed 4"],
        "exactly what was missed, nothing seen before"
    );
    nothing_more(&mut tom_ev).await;
    let _ = std::fs::remove_dir_all(dir);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_send_refused_for_good_is_reported_and_the_others_go_on() {
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let (sam, _) = client(&fed, "sam", None).await;
    let dm = sam
        .create_dm(&meridian::model::UserId::new("chloe").unwrap())
        .await
        .unwrap();
    // Tom is not part of the DM: its region refuses him, after the send was accepted.
    let (tom, mut tom_ev) = client(&fed, "tom", None).await;
    let refused = tom.send_message(&dm.space, "let me in").await.unwrap();
    let refused_key = refused.key().clone();
    let launch = SpaceId::new("globex:launch").unwrap();
    let fine = tom.send_message(&launch, "hello launch").await.unwrap();
    let err = refused.await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthorized, "{err}");
    assert_eq!(fine.await.unwrap().seq, 1, "the other send went through");
    let failed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Event::SendFailed { key, .. }) = tom_ev.next().await {
                return key;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(failed, refused_key);

    // It stays listed as failed until the app decides.
    let pending = tom.pending_sends().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].is_failed());
    let again = tom.retry_send(&refused_key).await.unwrap();
    assert_eq!(again.await.unwrap_err().code(), ErrorCode::Unauthorized);
    tom.cancel_send(&refused_key).await.unwrap();
    assert!(tom.pending_sends().await.unwrap().is_empty());
    let err = tom.cancel_send(&refused_key).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_send_made_again_under_its_key_is_stored_once() {
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let general = SpaceId::new("acme:general").unwrap();
    let key = meridian::model::IdempotencyKey::new("tab-handover-1").unwrap();

    // In the outbox (offline): a second send of the key is refused, and nothing is added.
    let (sam, _) = client(&fed, "sam", None).await;
    sam.join_space(&general).await.unwrap();
    sam.network_changed(false);
    let first = sam
        .send_message_with_key(&general, "once", key.clone())
        .await
        .unwrap();
    let again = sam
        .send_message_with_key(&general, "once", key.clone())
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::InvalidInput, "{again}");
    assert_eq!(sam.pending_sends().await.unwrap().len(), 1);
    sam.network_changed(true);
    let receipt = first.acked().await.unwrap();

    // Stored: another client (another tab, another run) sending it again gets the first
    // receipt, and the space holds it once.
    let (other, _) = client(&fed, "sam", None).await;
    let second = other
        .send_message_with_key(&general, "once", key)
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    assert_eq!(second, receipt);
    let history = other.history(&general, None, 50).await.unwrap();
    assert_eq!(
        history.iter().filter(|m| m.body == "once").count(),
        1,
        "{history:?}"
    );
    meridian_tests::residency_check!(fed);
}
