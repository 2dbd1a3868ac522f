//! The logs an app can turn on (`meridian::log`), against the devserver over real sockets:
//! they say what happened, carry each send's trace id, and never hold a token or a body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::time::Duration;

use devserver::{Federation, FederationConfig};
use futures::StreamExt;
use meridian::log::{LogLevel, LogRecord};
use meridian::model::SpaceId;
use meridian::{Client, Event};

static RECORDS: Mutex<Vec<LogRecord>> = Mutex::new(Vec::new());

fn keep(record: LogRecord) {
    RECORDS.lock().unwrap().push(record);
}

fn taken() -> Vec<LogRecord> {
    std::mem::take(&mut *RECORDS.lock().unwrap())
}

#[tokio::test]
async fn logs_carry_trace_ids_and_never_a_token_or_a_body() {
    assert!(
        meridian::log::install(keep),
        "the first subscriber of this process"
    );
    assert!(!meridian::log::install(keep), "installed once");
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let general = SpaceId::new("acme:general").unwrap();
    let body = "the body that must never be logged 7f3a";

    // Off by default: nothing reaches the handler.
    let quiet = Client::connect_native(fed.client_config("sam-token".to_owned()))
        .await
        .unwrap();
    quiet.join_space(&general).await.unwrap();
    quiet.disconnect().await;
    assert_eq!(taken(), Vec::new(), "no level set, no records");

    meridian::log::set_level(LogLevel::Debug);
    let sam = Client::connect_native(fed.client_config("sam-token".to_owned()))
        .await
        .unwrap();
    let mut events = sam.events();
    sam.join_space(&general).await.unwrap();
    let receipt = sam
        .send_message(&general, body)
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    // Its own message comes back: the receive path ran too.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            if matches!(event, Event::MessageReceived(ref m) if m.seq == receipt.seq) {
                break;
            }
        }
    })
    .await;
    sam.disconnect().await;
    meridian::log::set_level(LogLevel::Off);

    let records = taken();
    let text: Vec<String> = records.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|line| line.starts_with("info meridian::client: connected to the federation")),
        "{text:#?}"
    );
    let field = |record: &LogRecord, name: &str| {
        record
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let submitted: Vec<&LogRecord> = records
        .iter()
        .filter(|r| r.message == "send submitted")
        .collect();
    let stored: Vec<&LogRecord> = records
        .iter()
        .filter(|r| r.message == "send stored")
        .collect();
    assert_eq!((submitted.len(), stored.len()), (1, 1), "{text:#?}");
    let trace = field(submitted[0], "trace").unwrap();
    assert_eq!(trace.len(), 32, "a W3C trace id: {trace}");
    assert!(trace.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        field(stored[0], "trace"),
        Some(trace),
        "one id from submission to receipt"
    );
    assert_eq!(field(stored[0], "seq"), Some(receipt.seq.to_string()));
    for line in &text {
        assert!(!line.contains(body), "a body in the logs: {line}");
        assert!(!line.contains("sam-token"), "a token in the logs: {line}");
    }
    meridian_tests::residency_check!(fed);
}
