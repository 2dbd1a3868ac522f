//! The connection lifecycle against the devserver over real sockets: token renewal,
//! network switches, and continuity when a region can't fill a gap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use devserver::{Federation, FederationConfig, TapKind};
use futures::StreamExt;
use meridian::driver::BoxFuture;
use meridian::model::{Message, PresenceStatus, RegionId, SpaceId, UserId};
use meridian::{Client, ConnectionState, ErrorCode, Event, Token, TokenProvider};
use meridian_tests::demo::{Events, client};

async fn federation() -> Arc<Federation> {
    Arc::new(
        Federation::start(FederationConfig::default_three_regions())
            .await
            .unwrap(),
    )
}

/// Mints short-lived tokens from the devserver, like an app's auth backend would.
struct MintingProvider {
    fed: Arc<Federation>,
    user: UserId,
    ttl: Duration,
    /// Whether to tell the SDK when tokens expire (else it learns from rejections).
    announce_expiry: bool,
    calls: AtomicUsize,
}

impl TokenProvider for MintingProvider {
    fn fetch_token(&self) -> BoxFuture<'_, meridian::Result<Token>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let value = self.fed.mint_token(&self.user, self.ttl).unwrap();
        let expires_at_ms = self.announce_expiry.then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            now + self.ttl.as_millis() as u64
        });
        Box::pin(async move {
            Ok(Token {
                value,
                expires_at_ms,
            })
        })
    }
}

async fn messages(events: &mut Events, n: usize) -> (Vec<Message>, Vec<Event>) {
    let mut got = Vec::new();
    let mut others = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while got.len() < n {
            match events.next().await {
                Some(Event::MessageReceived(m)) => got.push(m),
                Some(e) => others.push(e),
                None => break,
            }
        }
    })
    .await;
    assert_eq!(
        got.len(),
        n,
        "expected {n} messages, got {got:?}; other events {others:?}"
    );
    (got, others)
}

fn no_unauthorized(events: &[Event]) {
    for e in events {
        let code = match e {
            Event::SendFailed { error, .. }
            | Event::SubscriptionLost { error, .. }
            | Event::RegionProblem { error, .. } => Some(error.code()),
            _ => None,
        };
        assert_ne!(code, Some(ErrorCode::Unauthorized), "the app saw {e:?}");
    }
}

#[tokio::test]
async fn a_token_rejected_at_reconnect_is_renewed_and_the_pending_work_carries_on() {
    let fed = federation().await;
    let provider = Arc::new(MintingProvider {
        fed: fed.clone(),
        user: UserId::new("sam").unwrap(),
        ttl: Duration::from_millis(800),
        announce_expiry: false,
        calls: AtomicUsize::new(0),
    });
    let config = fed.client_config("").with_token_provider(provider.clone());
    let sam = Client::connect_native(config).await.unwrap();
    let mut sam_ev: Events = Box::pin(sam.events());
    let launch = SpaceId::new("globex:launch").unwrap();
    sam.join_space(&launch).await.unwrap();
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);

    // The token expires; then the region restarts, so the reconnect presents it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    fed.restart_region(&RegionId::new("us-east").unwrap())
        .await
        .unwrap();
    let receipt = sam
        .send_message(&launch, "after the restart")
        .await
        .expect("the directory's 401 was handled by renewing too")
        .await
        .expect("the send went through with a renewed token");
    assert_eq!(receipt.seq, 1);
    let (_, others) = messages(&mut sam_ev, 1).await;
    no_unauthorized(&others);
    assert!(
        provider.calls.load(Ordering::SeqCst) >= 2,
        "the provider was asked again"
    );
    let connects = fed
        .tap(&RegionId::new("us-east").unwrap())
        .unwrap()
        .connects();
    let refusals: Vec<_> = connects
        .iter()
        .filter_map(|r| match &r.kind {
            TapKind::Connect {
                accepted: false,
                refused_with,
            } => Some(*refused_with),
            _ => None,
        })
        .collect();
    assert_eq!(
        refusals,
        [Some(ErrorCode::Unauthorized)],
        "the region refused the expired token once, then took the new one"
    );
    assert!(matches!(
        connects.last().map(|r| &r.kind),
        Some(TapKind::Connect { accepted: true, .. })
    ));
    meridian_tests::residency_check!(fed);
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires_when_its_expiry_is_known() {
    let fed = federation().await;
    let provider = Arc::new(MintingProvider {
        fed: fed.clone(),
        user: UserId::new("sam").unwrap(),
        ttl: Duration::from_millis(1000),
        announce_expiry: true,
        calls: AtomicUsize::new(0),
    });
    let config = fed.client_config("").with_token_provider(provider.clone());
    let sam = Client::connect_native(config).await.unwrap();
    sam.join_space(&SpaceId::new("globex:launch").unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let calls = provider.calls.load(Ordering::SeqCst);
    assert!(
        calls >= 3,
        "renewed ahead of each expiry: {calls} calls in 2.5 s"
    );
    // Every reconnect now presents a valid token: no rejection at all.
    fed.restart_region(&RegionId::new("us-east").unwrap())
        .await
        .unwrap();
    sam.send_message(&SpaceId::new("globex:launch").unwrap(), "still fine")
        .await
        .unwrap()
        .await
        .unwrap();
    let refused: Vec<_> = fed
        .tap(&RegionId::new("us-east").unwrap())
        .unwrap()
        .connects()
        .into_iter()
        .filter(|r| {
            matches!(
                r.kind,
                TapKind::Connect {
                    accepted: false,
                    ..
                }
            )
        })
        .collect();
    assert!(refused.is_empty(), "no connect was refused: {refused:?}");
    meridian_tests::residency_check!(fed);
}

#[tokio::test]
async fn going_offline_and_back_online_loses_nothing_and_reconnects_at_once() {
    let fed = federation().await;
    let launch = SpaceId::new("globex:launch").unwrap();
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    let (tom, _) = client(&fed, "tom").await;
    sam.join_space(&launch).await.unwrap();
    tom.join_space(&launch).await.unwrap();

    sam.network_changed(false);
    let offline = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(Event::OverallConnectionChanged(ConnectionState::Offline)) =
                sam_ev.next().await
            {
                return;
            }
        }
    })
    .await;
    assert!(offline.is_ok(), "the app was told it is offline");
    assert_eq!(
        sam.connection_state().await.unwrap(),
        ConnectionState::Offline
    );
    for i in 1..=3 {
        tom.send_message(&launch, &format!("while away {i}"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mine = sam.send_message(&launch, "written offline").await.unwrap();

    let back = std::time::Instant::now();
    sam.network_changed(true);
    let receipt = mine.await.unwrap();
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "recovery is immediate, not after a backoff: {:?}",
        back.elapsed()
    );
    assert_eq!(receipt.seq, 4);
    let (got, _) = messages(&mut sam_ev, 4).await;
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "while away 1",
            "while away 2",
            "while away 3",
            "written offline"
        ]
    );
    assert_eq!(
        sam.connection_state().await.unwrap(),
        ConnectionState::Connected
    );
    meridian_tests::residency_check!(fed);
}

/// The next presence of `who` that `events` reports, if one comes within 5 s.
async fn next_presence_of(events: &mut Events, who: &str) -> Option<PresenceStatus> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.next().await {
                Some(Event::PresenceChanged(p)) if p.user.as_str() == who => return p.status,
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn the_presence_the_app_set_is_told_again_after_a_reconnect() {
    let fed = federation().await;
    let launch = SpaceId::new("globex:launch").unwrap();
    let (sam, _) = client(&fed, "sam").await;
    let (tom, mut tom_ev) = client(&fed, "tom").await;
    sam.join_space(&launch).await.unwrap();
    tom.join_space(&launch).await.unwrap();
    sam.set_presence(PresenceStatus::Away).await.unwrap();
    assert_eq!(
        next_presence_of(&mut tom_ev, "sam").await,
        Some(PresenceStatus::Away)
    );

    // The region marks a dropped socket offline; the reconnected client says where it is.
    sam.network_changed(false);
    assert_eq!(
        next_presence_of(&mut tom_ev, "sam").await,
        Some(PresenceStatus::Offline)
    );
    sam.network_changed(true);
    assert_eq!(
        next_presence_of(&mut tom_ev, "sam").await,
        Some(PresenceStatus::Away),
        "sam's presence after the reconnect"
    );
    meridian_tests::residency_check!(fed);
}

#[tokio::test]
async fn a_gap_past_the_retention_window_is_reported_as_continuity_lost() {
    let fed = federation().await;
    let launch = SpaceId::new("globex:launch").unwrap();
    let us_east = RegionId::new("us-east").unwrap();
    fed.set_retention(&us_east, Some(2)).unwrap();
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    let (tom, _) = client(&fed, "tom").await;
    sam.join_space(&launch).await.unwrap();
    tom.send_message(&launch, "seen")
        .await
        .unwrap()
        .await
        .unwrap();
    messages(&mut sam_ev, 1).await;
    sam.network_changed(false);
    for i in 1..=5 {
        tom.send_message(&launch, &format!("m{i}"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    sam.network_changed(true);
    let (got, others) = messages(&mut sam_ev, 2).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6]);
    let lost: Vec<_> = others
        .iter()
        .filter_map(|e| match e {
            Event::ContinuityLost { space, from, to } => Some((space.clone(), *from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec![(launch.clone(), 2, Some(4))], "{others:?}");
    let page = sam.resync(&launch, 10).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6]);
    meridian_tests::residency_check!(fed);
}

#[tokio::test]
async fn a_region_that_lost_its_history_is_reported_and_followed_afresh() {
    let fed = federation().await;
    let launch = SpaceId::new("globex:launch").unwrap();
    let (sam, mut sam_ev) = client(&fed, "sam").await;
    let (tom, _) = client(&fed, "tom").await;
    sam.join_space(&launch).await.unwrap();
    for i in 1..=3 {
        tom.send_message(&launch, &format!("old {i}"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    messages(&mut sam_ev, 3).await;
    fed.restart_region_without_state(&RegionId::new("us-east").unwrap())
        .await
        .unwrap();
    let receipt = tom
        .send_message(&launch, "new 1")
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(receipt.seq, 1, "the region numbers afresh");
    let (got, others) = messages(&mut sam_ev, 1).await;
    assert_eq!(got[0].body, "new 1");
    assert!(
        others.iter().any(|e| matches!(
            e,
            Event::ContinuityLost {
                from: 4,
                to: None,
                ..
            }
        )),
        "{others:?}"
    );
    meridian_tests::residency_check!(fed);
}

#[tokio::test]
async fn a_disconnect_the_app_asked_for_ends_in_closed_and_reports_nothing_lost() {
    let fed = federation().await;
    let launch = SpaceId::new("globex:launch").unwrap();
    let (sam, mut events) = client(&fed, "sam").await;
    sam.join_space(&launch).await.unwrap();
    sam.disconnect().await;
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            seen.push(event);
        }
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::SubscriptionLost { .. })),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().rev().find_map(|e| match e {
            Event::OverallConnectionChanged(state) => Some(*state),
            _ => None,
        }),
        Some(ConnectionState::Closed),
        "{seen:?}"
    );
    assert_eq!(
        sam.connection_state().await.unwrap(),
        ConnectionState::Closed
    );
    meridian_tests::residency_check!(fed);
}
