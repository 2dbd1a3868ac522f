//! The retention window: a region keeps the newest messages of each space, says where its
//! history starts, and still deduplicates late retries.

use std::time::Duration;

use devserver::{Federation, FederationConfig};
use meridian::model::SpaceId;
use meridian::protocol::MAX_PAGE;
use serde_json::{Value, json};

use crate::support::{connect, region, token};

fn seqs(v: &Value) -> Vec<u64> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_region_keeps_only_its_retention_window_and_says_where_history_starts() {
    let config = FederationConfig::default_three_regions().with_retention(Some(3));
    let fed = Federation::start(config).await.unwrap();
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let empty = ana.join_since("acme:general", 0, None).await;
    assert_eq!(
        (empty.head_seq, empty.oldest_seq, empty.complete),
        (0, 1, true)
    );
    for i in 1..=5 {
        ana.send("acme:general", &format!("k{i}"), &format!("m{i}"))
            .await;
    }

    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    let reply = ben.join_since("acme:general", 0, None).await;
    assert_eq!((reply.head_seq, reply.oldest_seq), (5, 3));
    let missed: Vec<u64> = reply.missed.iter().map(|m| m.seq).collect();
    assert_eq!(missed, vec![3, 4, 5], "only held messages are caught up on");
    assert!(reply.complete);
    // A client that has seen seq 4 loses nothing: same answer as before retention.
    let reply = ben.join_since("acme:general", 4, None).await;
    assert_eq!(reply.missed.len(), 1);
    assert_eq!(reply.oldest_seq, 3);

    let all = ben
        .ok("history", json!({"space": "acme:general", "limit": 50}))
        .await;
    assert_eq!(seqs(&all), vec![3, 4, 5]);
    let older = ben
        .ok(
            "history",
            json!({"space": "acme:general", "before": 3, "limit": 50}),
        )
        .await;
    assert_eq!(seqs(&older), Vec::<u64>::new());
    let stored = fed.messages(&SpaceId::new("acme:general").unwrap());
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn a_late_retry_of_a_message_past_retention_is_still_deduplicated() {
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu_id = region("eu-west");
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    ana.join("acme:general").await;
    ben.join("acme:general").await;
    let first = ana.send("acme:general", "k1", "m1").await;
    ana.send("acme:general", "k2", "m2").await;
    ana.send("acme:general", "k3", "m3").await;

    // Changed at runtime; it applies at the next store.
    fed.set_retention(&eu_id, Some(1)).unwrap();
    assert_eq!(
        fed.messages(&SpaceId::new("acme:general").unwrap()).len(),
        3
    );
    ana.send("acme:general", "k4", "m4").await;
    let held = fed.messages(&SpaceId::new("acme:general").unwrap());
    assert_eq!(held.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4]);
    for _ in 1..=4 {
        ben.event("message").await;
    }

    // The ack of k1 was lost, the client retries after seq 1 left the window.
    let retry = ana.send("acme:general", "k1", "m1").await;
    assert_eq!(retry, first, "the first receipt, not a new message");
    ben.no_event("message", Duration::from_millis(300)).await;
    assert_eq!(ben.join_since("acme:general", 0, None).await.head_seq, 4);

    assert!(fed.set_retention(&region("mars"), None).is_err());
    fed.shutdown().await;
}

#[tokio::test]
async fn a_catch_up_from_before_the_window_pages_forward_from_the_oldest_message_held() {
    let window = MAX_PAGE + 20;
    let config = FederationConfig::default_three_regions().with_retention(Some(window));
    let fed = Federation::start(config).await.unwrap();
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    sam.join("globex:launch").await;
    let total = window as u64 + 30;
    // Pipelined: every send is in flight before the first ack is read.
    let ids: Vec<u64> = (1..=total)
        .map(|i| {
            sam.emit_with_ack(
                "message:send",
                vec![json!({"space": "globex:launch", "key": format!("k{i}"), "body": format!("m{i}")})],
            )
        })
        .collect();
    for id in ids {
        assert!(sam.ack(id).await[0].get("ok").is_some());
    }

    let mut tom = connect(&us, &token("tom")).await.unwrap();
    let page = tom.join_since("globex:launch", 5, None).await;
    let oldest = total - window as u64 + 1;
    assert_eq!((page.head_seq, page.oldest_seq), (total, oldest));
    assert_eq!(page.missed.len(), MAX_PAGE);
    assert_eq!(page.missed[0].seq, oldest);
    assert!(!page.complete);
    let last = page.missed.last().unwrap().seq;
    let rest = tom.join_since("globex:launch", last, None).await;
    assert_eq!(rest.missed.first().unwrap().seq, last + 1);
    assert_eq!(rest.missed.last().unwrap().seq, total);
    assert!(rest.complete);
    fed.shutdown().await;
}
