//! `--data-dir`: a federation started again on its data directory resumes where the
//! previous one stopped (messages, seqs, keys, DMs, epoch), whether it was shut down,
//! killed mid-write, or wiped.

use std::io::Write;
use std::path::{Path, PathBuf};

use devserver::{Federation, FederationConfig};
use meridian::model::SpaceId;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{connect, region, scratch_dir, token};

fn config(dir: &Path) -> FederationConfig {
    FederationConfig::default_three_regions().with_data_dir(dir)
}

/// The data file of a region (whatever its exact name).
fn data_file(dir: &Path, region: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().contains(region))
        .unwrap_or_else(|| panic!("no data file for {region} in {}", dir.display()))
}

async fn dm_location_status(fed: &Federation, space: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!(
            "{}/v1/spaces/{space}/location",
            fed.directory_url()
        ))
        .bearer_auth(token("ben"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_federation_started_again_on_its_data_dir_resumes_messages_dms_epoch_and_dedupe() {
    let dir = scratch_dir("resume");
    let eu_id = region("eu-west");
    let fed = Federation::start(config(&dir)).await.unwrap();
    let epoch = fed.region_epoch(&eu_id).unwrap();
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    let first = ana.send("acme:general", "k1", "kept 1").await;
    ana.send("acme:general", "k2", "kept 2").await;
    let dm = ana.ok("dm:create", json!({"peer": "ben"})).await;
    assert_eq!(dm["space"], "dm:ana:ben");
    ana.join("dm:ana:ben").await;
    ana.send("dm:ana:ben", "k1", "private").await;
    // Another region keeps its own history (and epoch).
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut sam = connect(&us, &token("sam")).await.unwrap();
    sam.join("globex:launch").await;
    sam.send("globex:launch", "s1", "launch day").await;
    let us_epoch = fed.region_epoch(&region("us-east")).unwrap();
    fed.shutdown().await;

    let fed = Federation::start(config(&dir)).await.unwrap();
    assert_eq!(fed.region_epoch(&eu_id).unwrap(), epoch);
    assert_eq!(fed.region_epoch(&region("us-east")).unwrap(), us_epoch);
    let general = fed.messages(&SpaceId::new("acme:general").unwrap());
    let bodies: Vec<&str> = general.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, vec!["kept 1", "kept 2"]);
    assert_eq!(dm_location_status(&fed, "dm:ana:ben").await, StatusCode::OK);

    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ben = connect(&eu, &token("ben")).await.unwrap();
    // A client of the previous process resumes seamlessly: same epoch, same seqs.
    let reply = ben.join_since("acme:general", 1, Some(&epoch)).await;
    assert_eq!((reply.head_seq, reply.epoch.as_str()), (2, epoch.as_str()));
    assert_eq!(
        reply.missed.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2]
    );
    let reply = ben.join_since("dm:ana:ben", 0, Some(&epoch)).await;
    assert_eq!(reply.missed[0].body, "private");
    // Dedupe by key survives; numbering continues; ids stay unique.
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    assert_eq!(ana.send("acme:general", "k1", "kept 1").await, first);
    let third = ana.send("acme:general", "k3", "new").await;
    assert_eq!(third["seq"], 3);
    let ids: std::collections::HashSet<_> = fed
        .messages(&SpaceId::new("acme:general").unwrap())
        .into_iter()
        .chain(fed.messages(&SpaceId::new("dm:ana:ben").unwrap()))
        .map(|m| m.id)
        .collect();
    assert_eq!(ids.len(), 4);
    let us = fed.region_socket_url(&region("us-east")).unwrap();
    let mut tom = connect(&us, &token("tom")).await.unwrap();
    assert_eq!(
        tom.join_since("globex:launch", 0, None).await.missed.len(),
        1
    );
    fed.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_record_torn_by_a_kill_mid_write_is_skipped_and_the_region_carries_on() {
    let dir = scratch_dir("torn");
    let eu_id = region("eu-west");
    let fed = Federation::start(config(&dir)).await.unwrap();
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    ana.send("acme:general", "k1", "whole").await;
    fed.shutdown().await;
    // What a kill in the middle of a write leaves behind.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(data_file(&dir, "eu-west"))
        .unwrap();
    f.write_all(br#"{"type":"message","key":"k2","message":{"space":"acme:gen"#)
        .unwrap();
    drop(f);

    let fed = Federation::start(config(&dir)).await.unwrap();
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    // The torn send was never acked: its retry is stored, as seq 2.
    assert_eq!(ana.send("acme:general", "k2", "retried").await["seq"], 2);
    fed.shutdown().await;

    let fed = Federation::start(config(&dir)).await.unwrap();
    let bodies: Vec<String> = fed
        .messages(&SpaceId::new("acme:general").unwrap())
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, vec!["whole", "retried"]);
    fed.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_wiped_region_stays_wiped_after_a_restart_of_the_process_and_keeps_its_dms() {
    let dir = scratch_dir("wiped");
    let eu_id = region("eu-west");
    let fed = Federation::start(config(&dir)).await.unwrap();
    let eu = fed.region_socket_url(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    ana.send("acme:general", "k1", "lost").await;
    ana.ok("dm:create", json!({"peer": "ben"})).await;
    fed.restart_region_without_state(&eu_id).await.unwrap();
    let epoch = fed.region_epoch(&eu_id).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    ana.send("acme:general", "k9", "after the loss").await;
    fed.shutdown().await;

    let fed = Federation::start(config(&dir)).await.unwrap();
    assert_eq!(fed.region_epoch(&eu_id).unwrap(), epoch);
    let held = fed.messages(&SpaceId::new("acme:general").unwrap());
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].seq, held[0].body.as_str()), (1, "after the loss"));
    assert_eq!(dm_location_status(&fed, "dm:ana:ben").await, StatusCode::OK);
    fed.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn retention_applies_to_what_a_restarted_federation_reloads() {
    let dir = scratch_dir("retention");
    let fed = Federation::start(config(&dir)).await.unwrap();
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    ana.join("acme:general").await;
    for i in 1..=5 {
        ana.send("acme:general", &format!("k{i}"), &format!("m{i}"))
            .await;
    }
    fed.shutdown().await;

    let fed = Federation::start(config(&dir).with_retention(Some(2)))
        .await
        .unwrap();
    let held = fed.messages(&SpaceId::new("acme:general").unwrap());
    assert_eq!(held.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5]);
    let eu = fed.region_socket_url(&region("eu-west")).unwrap();
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let reply = ana.join_since("acme:general", 0, None).await;
    assert_eq!((reply.head_seq, reply.oldest_seq), (5, 4));
    assert_eq!(ana.send("acme:general", "k1", "m1").await["seq"], 1);
    fed.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unusable_data_dir_is_a_startup_error_not_a_panic() {
    let dir = scratch_dir("unusable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = Federation::start(config(&file)).await.unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
