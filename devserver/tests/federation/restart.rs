//! Stopping and restarting a region.

use std::time::Duration;

use devserver::TapKind;
use meridian::model::{SpaceId, UserId};
use serde_json::json;

use crate::support::{connect, federation, region, token};

#[tokio::test]
async fn a_stopped_region_drops_its_sockets_and_a_restarted_one_keeps_its_port_and_store() {
    let fed = federation().await;
    let eu_id = region("eu-west");
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    ana.send("acme:general", "k1", "before the restart").await;
    // A raw socket that never connects the namespace is cut as well.
    let (mut idle, _) =
        tokio_tungstenite::connect_async(format!("{eu}/socket.io/?EIO=4&transport=websocket"))
            .await
            .unwrap();

    fed.stop_region(&eu_id).await.unwrap();
    assert!(!fed.is_region_running(&eu_id).await.unwrap());
    assert!(ana.closed_within(Duration::from_secs(3)).await);
    // Every socket left properly: its disconnect handling ran (and so its worker ended).
    let tap = fed.tap(&eu_id).unwrap();
    let ana_id = UserId::new("ana").unwrap();
    assert!(
        tap.records()
            .iter()
            .any(|r| r.user.as_ref() == Some(&ana_id) && r.kind == TapKind::Disconnect),
        "{:?}",
        tap.records()
    );
    let idle_closed = tokio::time::timeout(Duration::from_secs(3), async {
        use futures::StreamExt;
        while let Some(Ok(_)) = idle.next().await {}
    })
    .await;
    assert!(idle_closed.is_ok(), "an idle socket outlived the region");
    let refused = connect(&eu, &token("ana")).await.err().unwrap();
    assert!(refused.starts_with("transport"), "{refused}");
    // The other regions are unaffected.
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    connect(&us, &token("sam")).await.unwrap();

    fed.start_region(&eu_id).await.unwrap();
    assert_eq!(fed.region_socket_url(&eu_id).unwrap(), eu);
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let reply = ana
        .ok("space:join", json!({"space": "acme:general", "since": 0}))
        .await;
    assert_eq!(reply["head_seq"], 1);
    assert_eq!(reply["missed"][0]["body"], "before the restart");
    // The retry of a send whose ack was lost is still deduplicated after the restart.
    let receipt = ana.send("acme:general", "k1", "before the restart").await;
    assert_eq!(receipt["seq"], 1);
    assert_eq!(ana.send("acme:general", "k2", "after").await["seq"], 2);

    fed.restart_region(&eu_id).await.unwrap();
    assert!(ana.closed_within(Duration::from_secs(3)).await);
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    assert_eq!(
        fed.messages(&SpaceId::new("acme:general").unwrap()).len(),
        2
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn stopping_and_starting_twice_is_harmless_and_unknown_regions_are_refused() {
    let fed = federation().await;
    let ca = region("ca-central");
    fed.stop_region(&ca).await.unwrap();
    fed.stop_region(&ca).await.unwrap();
    fed.start_region(&ca).await.unwrap();
    fed.start_region(&ca).await.unwrap();
    let url = fed.region_socket_url(&ca).unwrap();
    connect(&url, &token("chloe")).await.unwrap();
    let mars = region("mars");
    assert!(fed.stop_region(&mars).await.is_err());
    assert!(fed.start_region(&mars).await.is_err());
    assert!(fed.region_socket_url(&mars).is_none());
    assert!(fed.tap(&mars).is_none());
    fed.shutdown().await;
}

#[tokio::test]
async fn a_shut_down_federation_frees_every_port() {
    let fed = federation().await;
    let port_of = |url: String| -> u16 { url.rsplit(':').next().unwrap().parse().unwrap() };
    let mut ports: Vec<u16> = fed
        .region_ids()
        .iter()
        .map(|r| port_of(fed.region_socket_url(r).unwrap()))
        .collect();
    ports.push(port_of(fed.directory_url()));
    fed.shutdown().await;
    for port in ports {
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("port {port} still taken: {e}"));
    }
}
