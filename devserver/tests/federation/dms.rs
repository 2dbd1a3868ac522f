//! Direct messages: housed where both policies permit, located by the directory.

use meridian::ErrorCode;
use meridian::envelope::KeyPair;
use meridian::model::{Message, Residency, SpaceId, SpaceKind, SpaceLocation};
use serde_json::{Value, json};

use crate::support::{connect, connect_with_key, federation, open_text, region, seal_text, token};

fn code(err: &Value) -> ErrorCode {
    serde_json::from_value(err["code"].clone()).unwrap()
}

#[tokio::test]
async fn a_dm_is_created_once_where_both_policies_permit_and_the_directory_finds_it() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region("ca-central")).unwrap();
    let chloe_key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &chloe_key)
        .await
        .unwrap();
    let loc: SpaceLocation =
        serde_json::from_value(chloe.ok("dm:create", json!({"peer": "sam"})).await).unwrap();
    assert_eq!(loc.space.as_str(), "dm:chloe:sam");
    assert_eq!(loc.region.as_str(), "ca-central");
    assert_eq!(loc.kind, SpaceKind::Dm);
    assert_eq!(loc.company.as_str(), "maple");
    // chloe's policy is DS, so the DM is too.
    assert_eq!(loc.residency, Residency::Ds);
    // Idempotent: the same pair gets the same space, whoever asks, wherever it is housed.
    let again: SpaceLocation =
        serde_json::from_value(chloe.ok("dm:create", json!({"peer": "sam"})).await).unwrap();
    assert_eq!(again, loc);
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam_us = connect(&us, &token("sam")).await.unwrap();
    let from_sam: SpaceLocation =
        serde_json::from_value(sam_us.ok("dm:create", json!({"peer": "chloe"})).await).unwrap();
    assert_eq!(from_sam, loc);

    let res = reqwest::Client::new()
        .get(format!(
            "{}/v1/spaces/dm:chloe:sam/location",
            fed.directory_url()
        ))
        .bearer_auth(token("sam"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<SpaceLocation>().await.unwrap(), loc);

    // Both participants can talk in it; sam reaches it in ca-central (whitelisted). It is
    // DS: sam seals to ca-central's key, chloe receives a copy sealed to hers.
    let mut sam = connect_with_key(&ca, &token("sam"), &KeyPair::generate())
        .await
        .unwrap();
    chloe.join("dm:chloe:sam").await;
    sam.join("dm:chloe:sam").await;
    let to = fed.region_public_key(&region("ca-central")).unwrap();
    let sealed = seal_text(&to, "dm:chloe:sam", "k1", "ca-central", "hi chloe");
    let reply = sam.send_sealed("dm:chloe:sam", "k1", sealed).await;
    assert_eq!(reply["ok"]["seq"], 1, "{reply}");
    let m: Message = serde_json::from_value(chloe.event("message").await).unwrap();
    let payload = serde_json::to_value(m.sealed.unwrap()).unwrap();
    let text = open_text(
        &chloe_key,
        "dm:chloe:sam",
        m.id.as_str(),
        "ca-central",
        &payload,
    );
    assert_eq!(text.unwrap(), "hi chloe");
    assert_eq!(
        fed.space_location(&SpaceId::new("dm:chloe:sam").unwrap()),
        Some(loc)
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn a_dm_is_closed_to_everyone_but_its_two_participants() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region("ca-central")).unwrap();
    let mut chloe = connect(&ca, &token("chloe")).await.unwrap();
    chloe.ok("dm:create", json!({"peer": "sam"})).await;
    let mut tom = connect(&ca, &token("tom")).await.unwrap();
    for (name, payload) in [
        ("space:join", json!({"space": "dm:chloe:sam"})),
        ("history", json!({"space": "dm:chloe:sam", "limit": 10})),
    ] {
        let err = tom.err(name, payload).await;
        assert_eq!(code(&err), ErrorCode::Unauthorized, "{name}: {err}");
    }
    fed.shutdown().await;
}

#[tokio::test]
async fn a_dm_no_region_may_house_under_both_policies_is_refused() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    // ana is eu-strict; chloe's ca-na policy never permits eu-west.
    let err = ana.err("dm:create", json!({"peer": "chloe"})).await;
    assert_eq!(code(&err), ErrorCode::PolicyViolation, "{err}");
    let err = ana.err("dm:create", json!({"peer": "nobody"})).await;
    assert_eq!(code(&err), ErrorCode::NotFound);
    let err = ana.err("dm:create", json!({"peer": "ana"})).await;
    assert_eq!(code(&err), ErrorCode::InvalidInput);
    assert!(
        fed.space_location(&SpaceId::new("dm:ana:chloe").unwrap())
            .is_none()
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn a_dm_to_be_housed_in_another_region_answers_moved_with_that_region() {
    let fed = federation().await;
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut sam = connect(&eu, &token("sam")).await.unwrap();
    // sam and tom are both homed in us-east: their DM lives there, not in eu-west.
    let err = sam.err("dm:create", json!({"peer": "tom"})).await;
    assert_eq!(code(&err), ErrorCode::Moved);
    assert_eq!(err["region"], "us-east");
    assert!(
        err["message"].as_str().unwrap().contains("us-east"),
        "{err}"
    );
    assert!(
        fed.space_location(&SpaceId::new("dm:sam:tom").unwrap())
            .is_none()
    );
    fed.shutdown().await;
}
