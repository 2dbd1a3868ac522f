//! A region that breaks the protocol: the client reports it, reconnects, and never panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use meridian::model::SpaceId;
use meridian::trust::DocumentSigner;
use meridian::{Client, ClientConfig, ErrorCode, Event};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as Ws;

/// A directory that houses every space in region `r1` at `socket_url`, signing its
/// document with `signer`.
async fn directory(socket_url: String, signer: &DocumentSigner) -> String {
    let doc: meridian::model::FederationDoc = serde_json::from_value(json!({
        "version": 1, "issued_at_ms": 0,
        "regions": [{"id": "r1", "name": "Region one", "socket_url": socket_url}],
        "policies": [{"id": "open", "mode": "strict", "residency": "dr"}],
        "flavors": []
    }))
    .unwrap();
    let signed = signer.sign(&doc);
    let app = Router::new()
        .route(
            "/v1/federation",
            get(move || async move { axum::Json(signed) }),
        )
        .route(
            "/v1/session",
            post(|| async {
                axum::Json(json!({"user": "eve", "display_name": "Eve", "company": "c",
                    "home_region": "r1", "policy": "open"}))
            }),
        )
        .route(
            "/v1/spaces/{space}/location",
            get(
                |axum::extract::Path(space): axum::extract::Path<String>| async move {
                    axum::Json(json!({"space": space, "region": "r1", "company": "c",
                    "kind": "channel", "residency": "dr"}))
                },
            ),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A region whose first connection answers the join with garbage and an unknown event,
/// and whose later connections behave.
async fn hostile_region(connections: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let open = r#"0{"sid":"x","upgrades":[],"pingInterval":5000,"pingTimeout":5000}"#;
                ws.send(Ws::text(open)).await.ok();
                while let Some(Ok(Ws::Text(frame))) = ws.next().await {
                    let frame = frame.as_str();
                    if frame.starts_with("40") {
                        ws.send(Ws::text("40{\"sid\":\"s\"}")).await.ok();
                        ws.send(Ws::text("42[\"from-the-future\",{}]")).await.ok();
                    } else if let Some(rest) = frame.strip_prefix("42") {
                        let ack: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        if n == 0 {
                            ws.send(Ws::text("43{{{not json")).await.ok();
                        } else {
                            let reply = format!(
                                "43{ack}[{{\"ok\":{{\"space\":\"s1\",\"head_seq\":0,\"missed\":[],\"complete\":true}}}}]"
                            );
                            ws.send(Ws::text(reply)).await.ok();
                        }
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn malformed_frames_and_unknown_events_are_reported_and_the_client_recovers() {
    let connections = Arc::new(AtomicUsize::new(0));
    let region = hostile_region(connections.clone()).await;
    let signer = DocumentSigner::generate("test-root").unwrap();
    let dir = directory(region, &signer).await;
    let client = Client::connect_native(
        ClientConfig::new(dir, "eve-token").with_federation_keys(vec![signer.public()]),
    )
    .await
    .unwrap();
    let mut events = client.events();
    let joined = tokio::time::timeout(
        Duration::from_secs(10),
        client.join_space(&SpaceId::new("s1").unwrap()),
    )
    .await
    .expect("the join completes on a later connection")
    .expect("and succeeds");
    assert_eq!(joined.head_seq, 0);
    assert!(connections.load(Ordering::SeqCst) >= 2, "it reconnected");
    let mut problems = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {
        if let Event::RegionProblem { error, .. } = e {
            problems.push(error.code());
        }
    }
    assert!(
        problems
            .iter()
            .filter(|c| **c == ErrorCode::Protocol)
            .count()
            >= 2,
        "both the unknown event and the garbage were reported: {problems:?}"
    );
    client.disconnect().await;
}
