//! Data sovereignty on the wire: region keys, sealed sends in, sealed deliveries out, and
//! the taps that prove a DS space's text never crossed a socket in the clear.

use std::time::Duration;

use devserver::{Federation, FederationConfig};
use meridian::ErrorCode;
use meridian::envelope::KeyPair;
use meridian::model::{FederationDoc, Message, SpaceId};
use meridian::protocol::{HistoryReply, JoinReply};
use serde_json::{Value, json};

use crate::support::{
    connect, connect_with_auth, connect_with_key, federation, open_text, region, scratch_dir,
    seal_text, token,
};

const LOUNGE: &str = "maple:lounge";
const CA: &str = "ca-central";

fn code(err: &Value) -> ErrorCode {
    serde_json::from_value(err["code"].clone()).unwrap()
}

fn message(v: Value) -> Message {
    serde_json::from_value(v).unwrap()
}

fn lounge() -> SpaceId {
    SpaceId::new(LOUNGE).unwrap()
}

/// The text of a DS delivery, opened with the receiving client's key; the body is empty.
fn open_delivery(key: &KeyPair, m: &Message) -> meridian::Result<String> {
    assert!(m.body.is_empty(), "a DS delivery carries no plaintext body");
    let sealed = serde_json::to_value(m.sealed.as_ref().expect("a sealed payload")).unwrap();
    open_text(key, m.space.as_str(), m.id.as_str(), CA, &sealed)
}

/// `text` sealed the way a client seals a send to ca-central (its published key).
fn sealed_send(fed: &Federation, space: &str, key: &str, text: &str) -> Value {
    let to = fed.region_public_key(&region(CA)).unwrap();
    seal_text(&to, space, key, CA, text)
}

/// Reads the federation document, whether served bare or wrapped with its signature.
async fn federation_doc(fed: &Federation) -> FederationDoc {
    let v: Value = reqwest::get(format!("{}/v1/federation", fed.directory_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    match v.get("document").and_then(Value::as_str) {
        Some(inner) => serde_json::from_str(inner).unwrap(),
        None => serde_json::from_value(v).unwrap(),
    }
}

#[tokio::test]
async fn the_federation_document_publishes_every_region_sealing_key() {
    let fed = federation().await;
    let doc = federation_doc(&fed).await;
    let mut keys = std::collections::HashSet::new();
    for r in &doc.regions {
        let published = r
            .public_key
            .as_deref()
            .expect("every region publishes a key");
        let key = fed.region_public_key(&r.id).unwrap();
        assert_eq!(published, key.to_base64(), "{}", r.id);
        keys.insert(published.to_string());
    }
    assert_eq!(keys.len(), 3, "each region has its own key");
    fed.shutdown().await;
}

#[tokio::test]
async fn a_sealed_send_to_a_ds_space_is_stored_and_delivered_sealed_to_each_member_key() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let keys = [
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    ];
    let mut members = Vec::new();
    // sam (globex, us-east) may enter ca-central: his policy whitelists it.
    for (user, key) in ["chloe", "leo", "sam"].iter().zip(&keys) {
        let mut c = connect_with_key(&ca, &token(user), key).await.unwrap();
        c.join(LOUNGE).await;
        members.push(c);
    }
    let text = "the maple syrup recipe";
    let reply = members[0]
        .send_sealed(LOUNGE, "k-1", sealed_send(&fed, LOUNGE, "k-1", text))
        .await;
    let receipt = &reply["ok"];
    assert_eq!(receipt["seq"], 1, "{reply}");

    let mut delivered = Vec::new();
    for (client, key) in members.iter_mut().zip(&keys) {
        let m = message(client.event("message").await);
        assert_eq!(m.id.as_str(), receipt["message_id"].as_str().unwrap());
        assert_eq!(m.sender.as_str(), "chloe");
        assert_eq!(open_delivery(key, &m).unwrap(), text);
        client.no_event("message", Duration::from_millis(200)).await;
        delivered.push(m);
    }
    // Each copy is sealed to its own client: another member's key, or a stranger's,
    // does not open it.
    let stranger = KeyPair::generate();
    assert!(open_delivery(&keys[1], &delivered[0]).is_err());
    assert!(open_delivery(&keys[0], &delivered[2]).is_err());
    assert!(open_delivery(&stranger, &delivered[1]).is_err());

    // At rest, in the region that houses the space: the plaintext.
    let stored = fed.messages(&lounge());
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, text);
    assert!(stored[0].sealed.is_none());
    // On the wire into the region: only sealed bytes.
    let tap = fed.tap(&region(CA)).unwrap();
    assert!(
        tap.never_saw_text(text),
        "{:?}",
        tap.records_mentioning(text)
    );
    assert_eq!(tap.sealed_frames(), 1);
    assert_eq!(tap.frames(), 4, "three joins and one send");
    for other in ["eu-west", "us-east"] {
        assert!(fed.tap(&region(other)).unwrap().never_saw_text(text));
    }
    fed.shutdown().await;
}

#[tokio::test]
async fn a_plaintext_send_to_a_ds_space_is_refused_and_nothing_is_stored() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &key).await.unwrap();
    chloe.join(LOUNGE).await;
    let err = chloe
        .err(
            "message:send",
            json!({"space": LOUNGE, "key": "k-1", "body": "in the clear"}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::PolicyViolation, "{err}");
    assert_eq!(err["region"], CA);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("requires sealed payloads"),
        "{err}"
    );
    assert!(!err.to_string().contains("in the clear"), "never echoed");
    chloe.no_event("message", Duration::from_millis(200)).await;
    assert!(fed.messages(&lounge()).is_empty());
    // A DM with a DS participant is DS as well.
    let dm = chloe.ok("dm:create", json!({"peer": "leo"})).await;
    assert_eq!(dm["residency"], "ds");
    chloe.join("dm:chloe:leo").await;
    let err = chloe
        .err(
            "message:send",
            json!({"space": "dm:chloe:leo", "key": "k-1", "body": "psst"}),
        )
        .await;
    assert_eq!(code(&err), ErrorCode::PolicyViolation, "{err}");
    fed.shutdown().await;
}

#[tokio::test]
async fn a_send_must_carry_its_text_in_exactly_one_of_body_and_sealed() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &key).await.unwrap();
    chloe.join(LOUNGE).await;
    let sealed = sealed_send(&fed, LOUNGE, "k-1", "hello");
    for payload in [
        json!({"space": LOUNGE, "key": "k-1", "body": "hello", "sealed": sealed}),
        json!({"space": LOUNGE, "key": "k-1"}),
        json!({"space": LOUNGE, "key": "k-1", "body": ""}),
        json!({"space": LOUNGE, "key": "k-1", "sealed": {"suite": "x"}}),
    ] {
        let err = chloe.err("message:send", payload.clone()).await;
        assert_eq!(code(&err), ErrorCode::InvalidInput, "{payload}: {err}");
    }
    // A sealed text must still be a valid body once opened.
    let blank = sealed_send(&fed, LOUNGE, "k-2", "   ");
    let reply = chloe.send_sealed(LOUNGE, "k-2", blank).await;
    assert_eq!(code(&reply["error"]), ErrorCode::InvalidInput, "{reply}");
    assert!(fed.messages(&lounge()).is_empty());
    fed.shutdown().await;
}

#[tokio::test]
async fn a_tampered_sealed_send_is_refused_with_integrity_and_not_stored() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &key).await.unwrap();
    chloe.join(LOUNGE).await;
    let sealed = sealed_send(&fed, LOUNGE, "k-1", "untouched");
    let flip = |field: &str| {
        let mut v = sealed.clone();
        let text = v[field].as_str().unwrap().to_string();
        let first = if text.starts_with('A') { "B" } else { "A" };
        v[field] = json!(format!("{first}{}", &text[1..]));
        v
    };
    let mut wrong_suite = sealed.clone();
    wrong_suite["suite"] = json!("rot13");
    let mut not_base64 = sealed.clone();
    not_base64["ct"] = json!("%%%");
    for bad in [flip("ct"), flip("enc"), wrong_suite, not_base64] {
        let reply = chloe.send_sealed(LOUNGE, "k-1", bad.clone()).await;
        assert_eq!(
            code(&reply["error"]),
            ErrorCode::Integrity,
            "{bad}: {reply}"
        );
    }
    chloe.no_event("message", Duration::from_millis(200)).await;
    assert!(fed.messages(&lounge()).is_empty());
    // The untouched payload still goes through afterwards: nothing was stored under k-1.
    let reply = chloe.send_sealed(LOUNGE, "k-1", sealed).await;
    assert_eq!(reply["ok"]["seq"], 1, "{reply}");
    fed.shutdown().await;
}

#[tokio::test]
async fn a_sealed_send_replayed_into_another_space_or_under_another_key_is_refused_with_integrity()
{
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &key).await.unwrap();
    chloe.ok("dm:create", json!({"peer": "leo"})).await;
    chloe.join(LOUNGE).await;
    chloe.join("dm:chloe:leo").await;
    let sealed = sealed_send(&fed, LOUNGE, "k-1", "for the lounge only");
    let reply = chloe.send_sealed(LOUNGE, "k-1", sealed.clone()).await;
    assert_eq!(reply["ok"]["seq"], 1, "{reply}");
    // Captured and replayed: into another space, and as another send of the same space.
    let reply = chloe
        .send_sealed("dm:chloe:leo", "k-1", sealed.clone())
        .await;
    assert_eq!(code(&reply["error"]), ErrorCode::Integrity, "{reply}");
    let reply = chloe.send_sealed(LOUNGE, "k-2", sealed.clone()).await;
    assert_eq!(code(&reply["error"]), ErrorCode::Integrity, "{reply}");
    // The same send again is a retry: its first receipt, nothing stored twice.
    let again = chloe.send_sealed(LOUNGE, "k-1", sealed).await;
    assert_eq!(again["ok"]["seq"], 1, "{again}");
    assert_eq!(fed.messages(&lounge()).len(), 1);
    assert!(
        fed.messages(&SpaceId::new("dm:chloe:leo").unwrap())
            .is_empty()
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn a_payload_sealed_for_another_region_is_refused_with_integrity() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &key).await.unwrap();
    chloe.join(LOUNGE).await;
    let us_key = fed.region_public_key(&region("us-east")).unwrap();
    let ca_key = fed.region_public_key(&region(CA)).unwrap();
    for sealed in [
        // Sealed to us-east's key (bound to ca-central or to us-east).
        seal_text(&us_key, LOUNGE, "k-1", CA, "wrong key"),
        seal_text(&us_key, LOUNGE, "k-1", "us-east", "wrong key"),
        // Sealed to ca-central's key, but bound to us-east.
        seal_text(&ca_key, LOUNGE, "k-1", "us-east", "wrong binding"),
        // Sealed to a key no region has.
        seal_text(KeyPair::generate().public(), LOUNGE, "k-1", CA, "stranger"),
    ] {
        let reply = chloe.send_sealed(LOUNGE, "k-1", sealed).await;
        assert_eq!(code(&reply["error"]), ErrorCode::Integrity, "{reply}");
    }
    assert!(fed.messages(&lounge()).is_empty());
    fed.shutdown().await;
}

#[tokio::test]
async fn after_a_region_key_swap_a_send_sealed_to_the_published_key_is_refused_with_integrity() {
    let fed = federation().await;
    let ca_id = region(CA);
    let ca = fed.region_socket_url(&ca_id).unwrap();
    let key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &key).await.unwrap();
    chloe.join(LOUNGE).await;
    let published = fed.region_public_key(&ca_id).unwrap();
    let doc_before = federation_doc(&fed).await;

    fed.swap_region_key(&ca_id).unwrap();
    assert_eq!(fed.region_public_key(&ca_id).unwrap(), published);
    let doc_after = federation_doc(&fed).await;
    assert_eq!(
        doc_after.version, doc_before.version,
        "the document did not change"
    );
    assert_eq!(doc_after.regions, doc_before.regions);

    let reply = chloe
        .send_sealed(LOUNGE, "k-1", sealed_send(&fed, LOUNGE, "k-1", "lost"))
        .await;
    assert_eq!(code(&reply["error"]), ErrorCode::Integrity, "{reply}");
    chloe.no_event("message", Duration::from_millis(200)).await;
    assert!(fed.messages(&lounge()).is_empty(), "never stores garbage");
    assert!(fed.swap_region_key(&region("mars")).is_err());
    fed.shutdown().await;
}

#[tokio::test]
async fn a_ds_join_catch_up_and_history_are_sealed_to_each_client_key() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let chloe_key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &chloe_key)
        .await
        .unwrap();
    chloe.join(LOUNGE).await;
    let texts = ["first words", "second words", "third words"];
    for (i, text) in texts.iter().enumerate() {
        let k = format!("k-{i}");
        let reply = chloe
            .send_sealed(LOUNGE, &k, sealed_send(&fed, LOUNGE, &k, text))
            .await;
        assert!(reply.get("ok").is_some(), "{reply}");
    }

    let leo_key = KeyPair::generate();
    let sam_key = KeyPair::generate();
    let mut pages = Vec::new();
    for (user, key) in [("leo", &leo_key), ("sam", &sam_key)] {
        let mut c = connect_with_key(&ca, &token(user), key).await.unwrap();
        let joined: JoinReply = c.join_since(LOUNGE, 0, None).await;
        assert_eq!(joined.missed.len(), 3);
        let caught_up: Vec<String> = joined
            .missed
            .iter()
            .map(|m| open_delivery(key, m).unwrap())
            .collect();
        assert_eq!(caught_up, texts, "{user}'s catch-up");
        let history: HistoryReply =
            serde_json::from_value(c.ok("history", json!({"space": LOUNGE, "limit": 10})).await)
                .unwrap();
        let read: Vec<String> = history
            .messages
            .iter()
            .map(|m| open_delivery(key, m).unwrap())
            .collect();
        assert_eq!(read, texts, "{user}'s history");
        pages.push(history.messages);
    }
    // leo's copies are leo's alone.
    assert!(open_delivery(&sam_key, &pages[0][0]).is_err());
    assert!(open_delivery(&chloe_key, &pages[0][0]).is_err());
    assert!(open_delivery(&leo_key, &pages[1][0]).is_err());
    fed.shutdown().await;
}

#[tokio::test]
async fn a_socket_without_a_sealing_key_may_not_join_or_read_a_ds_space() {
    let fed = federation().await;
    let ca = fed.region_socket_url(&region(CA)).unwrap();
    let mut sam = connect(&ca, &token("sam")).await.unwrap();
    for (name, payload) in [
        ("space:join", json!({"space": LOUNGE})),
        ("space:join", json!({"space": LOUNGE, "since": 0})),
        ("history", json!({"space": LOUNGE, "limit": 10})),
    ] {
        let err = sam.err(name, payload).await;
        assert_eq!(code(&err), ErrorCode::PolicyViolation, "{name}: {err}");
        assert_eq!(err["region"], CA);
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("a sealing key is required for this space"),
            "{err}"
        );
    }
    // Sending needs no key of its own (the text is sealed to the region's), only access.
    let ack = sam
        .ok(
            "message:send",
            json!({"space": LOUNGE, "key": "k", "sealed": sealed_send(&fed, LOUNGE, "k", "hi")}),
        )
        .await;
    assert_eq!(ack["seq"], 1, "{ack}");
    // A key that is not an X25519 public key is refused at connect.
    for bad in [json!("not base64!"), json!("AAAA"), json!(42)] {
        let refused = connect_with_auth(
            &ca,
            Some(json!({"token": token("sam"), "protocol": 1, "public_key": bad})),
        )
        .await
        .err()
        .unwrap();
        assert!(refused.starts_with("invalid_input:"), "{refused}");
    }
    fed.shutdown().await;
}

#[tokio::test]
async fn a_dr_space_takes_sealed_or_plaintext_sends_and_delivers_plaintext() {
    let fed = federation().await;
    let eu_id = region("eu-west");
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let key = KeyPair::generate();
    let mut ana = connect_with_key(&eu, &token("ana"), &key).await.unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    ana.join("acme:general").await;
    ben.join("acme:general").await;
    let to = fed.region_public_key(&eu_id).unwrap();
    let sealed = seal_text(&to, "acme:general", "k-1", "eu-west", "sealed anyway");
    let reply = ana.send_sealed("acme:general", "k-1", sealed).await;
    assert_eq!(reply["ok"]["seq"], 1, "{reply}");
    ana.send("acme:general", "k-2", "in the clear").await;
    for client in [&mut ana, &mut ben] {
        for (seq, text) in [(1, "sealed anyway"), (2, "in the clear")] {
            let m = message(client.event("message").await);
            assert_eq!((m.seq, m.body.as_str()), (seq, text));
            assert!(m.sealed.is_none());
        }
    }
    let tap = fed.tap(&eu_id).unwrap();
    assert!(tap.never_saw_text("sealed anyway"));
    assert!(tap.saw_text("in the clear"));
    fed.shutdown().await;
}

#[tokio::test]
async fn a_region_key_survives_stops_wipes_and_with_a_data_dir_a_new_process() {
    let ca_id = region(CA);
    // In memory: kept across stop/start and a region that lost its data.
    let fed = federation().await;
    let key = fed.region_public_key(&ca_id).unwrap();
    fed.restart_region(&ca_id).await.unwrap();
    fed.restart_region_without_state(&ca_id).await.unwrap();
    assert_eq!(fed.region_public_key(&ca_id).unwrap(), key);
    fed.shutdown().await;

    // With a data dir: the next process opens with the same key.
    let dir = scratch_dir("sealing-key");
    let config = FederationConfig::default_three_regions().with_data_dir(&dir);
    let fed = Federation::start(config.clone()).await.unwrap();
    let key = fed.region_public_key(&ca_id).unwrap();
    fed.restart_region_without_state(&ca_id).await.unwrap();
    fed.shutdown().await;
    let fed = Federation::start(config).await.unwrap();
    assert_eq!(fed.region_public_key(&ca_id).unwrap(), key);
    assert_eq!(
        federation_doc(&fed)
            .await
            .region(&ca_id)
            .unwrap()
            .public_key
            .as_deref(),
        Some(key.to_base64().as_str())
    );
    let ca = fed.region_socket_url(&ca_id).unwrap();
    let client_key = KeyPair::generate();
    let mut chloe = connect_with_key(&ca, &token("chloe"), &client_key)
        .await
        .unwrap();
    chloe.join(LOUNGE).await;
    let reply = chloe
        .send_sealed(
            LOUNGE,
            "k-1",
            seal_text(&key, LOUNGE, "k-1", CA, "still opens"),
        )
        .await;
    assert_eq!(reply["ok"]["seq"], 1, "{reply}");
    // The key pair is one record of the data file, kept through the wipe.
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(CA))
        .unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(text.matches("\"sealing_key\"").count(), 1, "one key record");
    fed.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
