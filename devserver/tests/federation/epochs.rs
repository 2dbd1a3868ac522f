//! History epochs: a region keeps its epoch across restarts, and a region that lost its
//! data gets a new one and answers clients of the old one from the start of its history.

use devserver::Federation;
use meridian::model::SpaceId;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{connect, federation, region, token};

fn is_epoch(e: &str) -> bool {
    e.len() == 16 && e.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_region_keeps_its_epoch_across_a_restart_and_answers_since_within_it() {
    let fed = federation().await;
    let eu_id = region("eu-west");
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let joined: meridian::protocol::JoinReply =
        serde_json::from_value(ana.join("acme:general").await).unwrap();
    assert!(is_epoch(&joined.epoch), "{:?}", joined.epoch);
    assert_eq!(Some(joined.epoch.clone()), fed.region_epoch(&eu_id));
    // Every region has its own.
    assert_ne!(
        fed.region_epoch(&region("us-east")),
        Some(joined.epoch.clone())
    );
    for i in 1..=3 {
        ana.send("acme:general", &format!("k{i}"), &format!("m{i}"))
            .await;
    }

    fed.restart_region(&eu_id).await.unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let reply = ana.join_since("acme:general", 2, Some(&joined.epoch)).await;
    assert_eq!(reply.epoch, joined.epoch);
    assert_eq!(
        reply.missed.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![3]
    );
    assert!(reply.complete);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_region_that_lost_its_state_has_a_new_epoch_and_answers_the_old_one_from_the_start() {
    let fed = federation().await;
    let eu_id = region("eu-west");
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let old = fed.region_epoch(&eu_id).unwrap();
    ana.join("acme:general").await;
    for i in 1..=3 {
        ana.send("acme:general", &format!("k{i}"), &format!("old {i}"))
            .await;
    }
    let dm = ana.ok("dm:create", json!({"peer": "ben"})).await;
    assert_eq!(dm["space"], "dm:ana:ben");

    fed.restart_region_without_state(&eu_id).await.unwrap();
    assert!(ana.closed_within(std::time::Duration::from_secs(3)).await);
    assert!(fed.is_region_running(&eu_id).await.unwrap());
    assert_eq!(fed.region_socket_url(&eu_id).unwrap(), eu, "same port");
    let new = fed.region_epoch(&eu_id).unwrap();
    assert!(is_epoch(&new));
    assert_ne!(new, old);
    assert!(
        fed.messages(&SpaceId::new("acme:general").unwrap())
            .is_empty()
    );

    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    // A client of the old epoch, at seq 3: nothing to catch up on yet, but it learns the
    // new epoch and that numbering restarted.
    let reply = ana.join_since("acme:general", 3, Some(&old)).await;
    assert_eq!((reply.head_seq, reply.oldest_seq), (0, 1));
    assert!(reply.missed.is_empty() && reply.complete);
    assert_eq!(reply.epoch, new);
    // The keys were lost as well: a retry of k1 is a new message.
    assert_eq!(ana.send("acme:general", "k1", "new 1").await["seq"], 1);
    ana.send("acme:general", "k4", "new 2").await;

    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    let reply = ben.join_since("acme:general", 3, Some(&old)).await;
    let bodies: Vec<&str> = reply.missed.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        vec!["new 1", "new 2"],
        "since is ignored across epochs"
    );
    assert!(reply.complete);
    // Within the new epoch, since counts again.
    let reply = ben.join_since("acme:general", 1, Some(&new)).await;
    assert_eq!(
        reply.missed.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2]
    );

    // The DM housed there is still known to the directory and still enterable.
    let res = reqwest::Client::new()
        .get(format!(
            "{}/v1/spaces/dm:ana:ben/location",
            fed.directory_url()
        ))
        .bearer_auth(token("ben"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let reply = ben.join_since("dm:ana:ben", 0, None).await;
    assert_eq!((reply.head_seq, reply.epoch.as_str()), (0, new.as_str()));

    // Other regions are untouched.
    assert!(fed.region_epoch(&region("us-east")).is_some());
    assert!(
        fed.restart_region_without_state(&region("mars"))
            .await
            .is_err()
    );
    Federation::shutdown(fed).await;
}
