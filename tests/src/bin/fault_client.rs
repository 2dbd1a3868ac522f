//! `fault-client`: a Meridian client in a process of its own, for the fault-injection suite
//! (tests/faults.rs), which kills it with SIGKILL and starts it again on the same store.
//!
//! ```text
//! fault-client <directory-url> <user> <store-dir>
//! ```
//!
//! It connects with a `FileStore` in `<store-dir>` (token `<user>-token`), prints
//! `CONNECTED <user> pending=<n>` (sends left over from an earlier run), then carries out
//! one command per line on stdin, answering on stdout:
//!
//! - `join <space>` -> `JOINED <space> <head_seq>`
//! - `send <space> <count> <prefix>` -> sends `<prefix> 1` .. `<prefix> <count>` (each
//!   persisted before the next), then `QUEUED <count> <key>,<key>,...`
//! - `stream <space> <count> <prefix> <pace-ms>` -> sends `<prefix> 1` .. `<prefix> <count>`
//!   one every `<pace-ms>`, printing `PERSISTED <i> <key>` as each `send_message` returns
//!   (the send is in the store), then `STREAMED <count>`
//! - `drain <timeout-ms>` -> waits until no send is pending, printing `SENT <key> <seq>` for
//!   each one stored, then `DRAINED <sent>` (or `NOT_DRAINED <pending>` at the timeout)
//! - `quit` -> disconnects (flushing the store) and exits 0
//!
//! Any failure prints `ERROR <what>` and exits 1.

#![allow(clippy::print_stdout, reason = "stdout is how this binary reports")]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meridian::model::SpaceId;
use meridian::store::FileStore;
use meridian::{Client, ClientConfig, Event};
use tokio::io::{AsyncBufReadExt, BufReader};

fn fail(what: impl std::fmt::Display) -> ExitCode {
    println!("ERROR {what}");
    ExitCode::FAILURE
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [directory, user, store, keys] = args.as_slice() else {
        return fail("usage: fault-client <directory-url> <user> <store-dir> <id=key,...>");
    };
    let keys = keys
        .split(',')
        .filter_map(|k| k.split_once('='))
        .map(|(id, public_key)| meridian::model::FederationKey {
            id: id.to_owned(),
            public_key: public_key.to_owned(),
        })
        .collect();
    let config = ClientConfig::new(directory.as_str(), format!("{user}-token"))
        .with_federation_keys(keys)
        .with_store(Arc::new(FileStore::new(store)));
    let client = match Client::connect_native(config).await {
        Ok(c) => c,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let mut events = client.events();
    let pending = match client.pending_sends().await {
        Ok(p) => p.len(),
        Err(e) => return fail(format!("pending_sends: {e}")),
    };
    println!("CONNECTED {user} pending={pending}");

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = stdin.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["join", space] => {
                let space = match SpaceId::new(*space) {
                    Ok(s) => s,
                    Err(e) => return fail(format!("join: {e}")),
                };
                match client.join_space(&space).await {
                    Ok(joined) => println!("JOINED {space} {}", joined.head_seq),
                    Err(e) => return fail(format!("join {space}: {e}")),
                }
            }
            ["send", space, count, prefix] => {
                let (Ok(space), Ok(count)) = (SpaceId::new(*space), count.parse::<u32>()) else {
                    return fail(format!("bad send command {line:?}"));
                };
                let mut keys = Vec::new();
                for i in 1..=count {
                    // Returns once the send is persisted; the receipt is not awaited.
                    match client.send_message(&space, &format!("{prefix} {i}")).await {
                        Ok(pending) => keys.push(pending.key().to_string()),
                        Err(e) => return fail(format!("send {i} to {space}: {e}")),
                    }
                }
                println!("QUEUED {count} {}", keys.join(","));
            }
            ["stream", space, count, prefix, pace_ms] => {
                let (Ok(space), Ok(count), Ok(pace)) = (
                    SpaceId::new(*space),
                    count.parse::<u32>(),
                    pace_ms.parse::<u64>(),
                ) else {
                    return fail(format!("bad stream command {line:?}"));
                };
                for i in 1..=count {
                    match client.send_message(&space, &format!("{prefix} {i}")).await {
                        Ok(pending) => println!("PERSISTED {i} {}", pending.key()),
                        Err(e) => return fail(format!("send {i} to {space}: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(pace)).await;
                }
                println!("STREAMED {count}");
            }
            ["drain", timeout_ms] => {
                let Ok(ms) = timeout_ms.parse::<u64>() else {
                    return fail(format!("bad drain command {line:?}"));
                };
                let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
                let mut sent = 0;
                loop {
                    let left = match client.pending_sends().await {
                        Ok(p) => p.len(),
                        Err(e) => return fail(format!("pending_sends: {e}")),
                    };
                    if left == 0 {
                        // Report what is still queued in the stream (stored just now).
                        while let Ok(Some(event)) =
                            tokio::time::timeout(Duration::from_millis(50), events.next()).await
                        {
                            if let Event::MessageSent { key, receipt, .. } = event {
                                println!("SENT {key} {}", receipt.seq);
                                sent += 1;
                            }
                        }
                        println!("DRAINED {sent}");
                        break;
                    }
                    // Woken by the next event; the pending list is asked again at least
                    // every 200 ms in case an outcome came before we subscribed.
                    match tokio::time::timeout_at(
                        deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
                        events.next(),
                    )
                    .await
                    {
                        Ok(Some(Event::MessageSent { key, receipt, .. })) => {
                            println!("SENT {key} {}", receipt.seq);
                            sent += 1;
                        }
                        Ok(Some(Event::SendFailed { key, error, .. })) => {
                            return fail(format!("send {key} failed for good: {error}"));
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => return fail("the event stream ended"),
                        Err(_) if tokio::time::Instant::now() >= deadline => {
                            println!("NOT_DRAINED {left}");
                            break;
                        }
                        Err(_) => {}
                    }
                }
            }
            ["quit"] => {
                client.disconnect().await;
                return ExitCode::SUCCESS;
            }
            _ => return fail(format!("unknown command {line:?}")),
        }
    }
    client.disconnect().await;
    ExitCode::SUCCESS
}
