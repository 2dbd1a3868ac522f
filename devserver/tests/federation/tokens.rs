//! Minted tokens: `POST /v1/dev/tokens` and `Federation::mint_token`, usable wherever a
//! static token is until they expire; static tokens never do.

use std::time::Duration;

use devserver::{DevserverError, DirectoryFault};
use meridian::ErrorCode;
use meridian::model::{SessionInfo, UserId};
use meridian::protocol::ErrorBody;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{connect, federation, region, token};

async fn mint(directory: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{directory}/v1/dev/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn session(directory: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{directory}/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_minted_token_works_like_a_static_one_until_it_expires() {
    let fed = federation().await;
    let dir = fed.directory_url();
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let before = now_ms();
    let res = mint(&dir, json!({"user": "ana", "ttl_ms": 2500})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let minted: Value = res.json().await.unwrap();
    let t = minted["token"].as_str().unwrap().to_string();
    assert!(t.len() >= 32, "a random token: {t}");
    let expires = minted["expires_at_ms"].as_u64().unwrap();
    assert!(
        expires >= before + 2500 && expires <= now_ms() + 2500,
        "{expires}"
    );
    let again: Value = mint(&dir, json!({"user": "ana", "ttl_ms": 2500}))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(again["token"], minted["token"]);

    let res = session(&dir, &t).await;
    assert_eq!(res.status(), StatusCode::OK);
    let info: SessionInfo = res.json().await.unwrap();
    assert_eq!(info.user.as_str(), "ana");
    let mut ana = connect(&eu, &t).await.unwrap();
    ana.join("acme:general").await;

    tokio::time::sleep(Duration::from_millis(
        expires.saturating_sub(now_ms()) + 100,
    ))
    .await;
    let res = session(&dir, &t).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: ErrorBody = res.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::Unauthorized);
    assert!(body.message.contains("expired"), "{}", body.message);
    let refused = connect(&eu, &t).await.err().unwrap();
    assert!(
        refused.starts_with("unauthorized: token expired"),
        "{refused}"
    );
    // An unknown token is still told apart from an expired one.
    let refused = connect(&eu, "dev-0000").await.err().unwrap();
    assert!(
        refused.starts_with("unauthorized: unknown token"),
        "{refused}"
    );
    // Static tokens from the config never expire.
    assert_eq!(session(&dir, &token("ana")).await.status(), StatusCode::OK);
    connect(&eu, &token("ana")).await.unwrap();
    fed.shutdown().await;
}

#[tokio::test]
async fn minting_refuses_unknown_users_zero_lifetimes_and_malformed_bodies() {
    let fed = federation().await;
    let dir = fed.directory_url();
    let err = |res: reqwest::Response, status| async move {
        assert_eq!(res.status(), status);
        res.json::<ErrorBody>().await.unwrap()
    };
    let body = err(
        mint(&dir, json!({"user": "nobody", "ttl_ms": 1000})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body.code, ErrorCode::NotFound);
    for bad in [
        json!({"user": "ana", "ttl_ms": 0}),
        json!({"user": "ana"}),
        json!({"user": "ana", "ttl_ms": -5}),
        json!({"user": "not a valid id!", "ttl_ms": 1000}),
        json!("ana"),
    ] {
        let body = err(mint(&dir, bad.clone()).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(body.code, ErrorCode::InvalidInput, "{bad}");
    }
    let res = reqwest::Client::new()
        .post(format!("{dir}/v1/dev/tokens"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        err(res, StatusCode::BAD_REQUEST).await.code,
        ErrorCode::InvalidInput
    );
    // A huge lifetime saturates instead of overflowing.
    let res = mint(&dir, json!({"user": "ana", "ttl_ms": u64::MAX})).await;
    assert_eq!(res.status(), StatusCode::OK);
    fed.shutdown().await;
}

#[tokio::test]
async fn in_process_tests_mint_tokens_directly_even_while_the_directory_is_faulty() {
    let fed = federation().await;
    let ana = UserId::new("ana").unwrap();
    let t = fed.mint_token(&ana, Duration::from_secs(60)).unwrap();
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    connect(&eu, &t).await.unwrap();
    // A minted token carries its user's policy: ana may not enter us-east.
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let refused = connect(&us, &t).await.err().unwrap();
    assert!(refused.starts_with("policy_violation"), "{refused}");

    assert!(matches!(
        fed.mint_token(&UserId::new("nobody").unwrap(), Duration::from_secs(1)),
        Err(DevserverError::UnknownUser(_))
    ));
    assert!(matches!(
        fed.mint_token(&ana, Duration::ZERO),
        Err(DevserverError::InvalidInput(_))
    ));

    // The dev controls are not part of the directory under test.
    fed.set_directory_fault(Some(DirectoryFault::Status500));
    let res = mint(&fed.directory_url(), json!({"user": "ben", "ttl_ms": 1000})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        session(&fed.directory_url(), &t).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    fed.shutdown().await;
}
