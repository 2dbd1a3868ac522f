//! Fault injection over real sockets: the SDK against the devserver through fault proxies
//! (cuts, stalls, slow links, refused connections), regions restarted in the middle of
//! traffic (with and without their state), the devserver *process* killed with SIGKILL and
//! restarted, and client *processes* killed with sends pending and started again on the
//! same store. The deterministic simulation of the same properties is in
//! `sdk-core/tests/`; this suite is its real-socket half.
//!
//! Each scenario ends with one summary line (`faults[<name>]: sent=.. delivered=.. lost=..
//! duplicated=.. out_of_order=.. continuity_events=.. ...`) and fails unless nothing was
//! lost, duplicated or reordered (and `ContinuityLost` came only where a region really
//! lost data). Seeded scenarios print their seed; `FAULTS_SEED=<n>` replays one.
//! `tests/FAULTS.md` lists the scenarios and what the failing ones found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devserver::{Federation, FederationConfig, TapKind};
use meridian::backoff::Backoff;
use meridian::model::{Message, RegionId, SpaceId, UserId};
use meridian::session::SessionConfig;
use meridian::{Client, ClientConfig, ConnectionState, Event};
use meridian_tests::ledger::single_histories;
use meridian_tests::process::scratch_dir;
use meridian_tests::proxy::ProxyOptions;
use meridian_tests::{ClientProcess, DevserverProcess, EventLog, FaultProxy, Rng, Sent, Tally};
use tokio::task::JoinHandle;

// ----- the cast -----

fn space(id: &str) -> SpaceId {
    SpaceId::new(id).unwrap()
}

fn region(id: &str) -> RegionId {
    RegionId::new(id).unwrap()
}

/// Session tunables for scenarios that stall links on purpose: a stalled link is noticed
/// after 1.5 s without an answer (instead of 10 s), a blackholed connect attempt after 2 s,
/// and retries back off up to 1 s, so each scenario stays within seconds. The restart
/// scenarios use the defaults.
fn quick_to_notice() -> SessionConfig {
    SessionConfig {
        connect_timeout: Duration::from_secs(2),
        ack_timeout: Duration::from_millis(1500),
        backoff: Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        },
        ..SessionConfig::default()
    }
}

/// A client in the test process, with everything it emits recorded.
struct Member {
    name: &'static str,
    client: Client,
    log: EventLog,
    /// The spaces it joined, with the head seq when it joined.
    joined: Vec<(SpaceId, u64)>,
}

/// A directory, and the keys to trust its documents with.
struct Dir {
    url: String,
    keys: Vec<meridian::model::FederationKey>,
}

impl Dir {
    fn of(fed: &Federation) -> Self {
        Self {
            url: fed.directory_url(),
            keys: fed.federation_keys(),
        }
    }
}

/// A fault proxy in front of `region`, and the federation document pointing clients at it.
async fn proxy_in_front(fed: &Federation, region: &RegionId) -> FaultProxy {
    let proxy = FaultProxy::start(fed.region_addr(region).unwrap())
        .await
        .unwrap();
    fed.advertise_region(region, Some(proxy.ws_url())).unwrap();
    proxy
}

async fn member(
    directory: &Dir,
    name: &'static str,
    session: SessionConfig,
    spaces: &[&SpaceId],
) -> Member {
    let mut config = ClientConfig::new(directory.url.as_str(), format!("{name}-token"))
        .with_federation_keys(directory.keys.clone());
    config.session = session;
    let client = Client::connect_native(config)
        .await
        .unwrap_or_else(|e| panic!("{name} connects: {e}"));
    let log = EventLog::record(name, client.events());
    let mut joined = Vec::new();
    for s in spaces {
        let j = client
            .join_space(s)
            .await
            .unwrap_or_else(|e| panic!("{name} joins {s}: {e}"));
        joined.push(((*s).clone(), j.head_seq));
    }
    Member {
        name,
        client,
        log,
        joined,
    }
}

// ----- traffic -----

/// A send and the task awaiting its receipt (the seq, or why there is none).
type Outcome = (Sent, JoinHandle<Result<u64, String>>);

/// Sends `count` messages to `space` at a steady pace, without waiting for receipts (the
/// outbox keeps them in order). Bodies are `<tag>|<sender>|<space>|<i>`.
fn send_steadily(
    client: Client,
    sender: &'static str,
    space: SpaceId,
    count: usize,
    pace: Duration,
    tag: &'static str,
) -> JoinHandle<Vec<Outcome>> {
    tokio::spawn(async move {
        let mut outcomes = Vec::with_capacity(count);
        let mut tick = tokio::time::interval(pace);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 1..=count {
            tick.tick().await;
            let sent = Sent {
                sender: sender.to_string(),
                space: space.clone(),
                body: format!("{tag}|{sender}|{space}|{i}"),
            };
            let outcome = match client.send_message(&space, &sent.body).await {
                Ok(pending) => tokio::spawn(async move {
                    pending
                        .await
                        .map(|r| r.seq)
                        .map_err(|e| format!("{} ({})", e, e.code()))
                }),
                Err(e) => {
                    let why = format!("refused at once: {e} ({})", e.code());
                    tokio::spawn(async move { Err(why) })
                }
            };
            outcomes.push((sent, outcome));
        }
        outcomes
    })
}

/// Every member sends `count` messages to each space it joined.
fn traffic(
    members: &[Member],
    count: usize,
    pace: Duration,
    tag: &'static str,
) -> Vec<JoinHandle<Vec<Outcome>>> {
    members
        .iter()
        .flat_map(|m| {
            m.joined
                .iter()
                .map(|(s, _)| send_steadily(m.client.clone(), m.name, s.clone(), count, pace, tag))
        })
        .collect()
}

/// Waits for the senders to finish sending, then for every receipt (at most `timeout`).
async fn outcomes(
    senders: Vec<JoinHandle<Vec<Outcome>>>,
    timeout: Duration,
) -> Vec<(Sent, Result<u64, String>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut all = Vec::new();
    for sender in senders {
        for (sent, handle) in sender.await.expect("a sender task") {
            let outcome = match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(e)) => Err(format!("the receipt task failed: {e}")),
                Err(_) => Err(format!("no receipt within {timeout:?}")),
            };
            all.push((sent, outcome));
        }
    }
    all
}

/// The highest seq delivered in the space's current history (after the last
/// `ContinuityLost` with an open end).
fn delivered_head(events: &[Event], space: &SpaceId) -> u64 {
    let mut head = 0;
    for e in events {
        match e {
            Event::MessageReceived(m) if &m.space == space => head = head.max(m.seq),
            Event::ContinuityLost {
                space: s, to: None, ..
            } if s == space => head = 0,
            _ => {}
        }
    }
    head
}

/// Waits until every member has been handed the newest message of each space it joined
/// (`heads[space]`, the length of its current history), then until nothing more arrives
/// for a while (late duplicates would show up then).
async fn settle(members: &[Member], heads: &HashMap<SpaceId, u64>, timeout: Duration) {
    let waits = members.iter().flat_map(|m| {
        m.joined.iter().map(move |(s, _)| {
            let head = heads.get(s).copied().unwrap_or(0);
            m.log
                .wait_until(timeout, move |events| delivered_head(events, s) >= head)
        })
    });
    // A member that misses its deadline is reported by the ledger, with the details.
    futures::future::join_all(waits).await;
    futures::future::join_all(members.iter().map(|m| {
        m.log
            .wait_quiet(Duration::from_millis(400), Duration::from_secs(5))
    }))
    .await;
}

/// Checks everything: sends against the histories, receipts, and each member's deliveries.
fn tally(
    members: &[Member],
    outcomes: &[(Sent, Result<u64, String>)],
    histories: &BTreeMap<SpaceId, Vec<Vec<Message>>>,
) -> Tally {
    let mut t = Tally::new();
    let sent: Vec<Sent> = outcomes.iter().map(|(s, _)| s.clone()).collect();
    t.check_sends(&sent, histories);
    for (s, outcome) in outcomes {
        t.check_receipt(s, outcome.clone(), histories);
    }
    for m in members {
        let events = m.log.events();
        for (s, joined_at) in &m.joined {
            let h = histories.get(s).map(Vec::as_slice).unwrap_or(&[]);
            t.check_deliveries(m.name, s, *joined_at, &events, h);
        }
    }
    t
}

/// How many times members connected to a region again after their first connection.
fn reconnects(members: &[Member]) -> usize {
    members
        .iter()
        .map(|m| {
            let mut connected: HashMap<RegionId, usize> = HashMap::new();
            for e in m.log.events() {
                if let Event::ConnectionChanged {
                    region,
                    state: ConnectionState::Connected,
                } = e
                {
                    *connected.entry(region).or_default() += 1;
                }
            }
            connected
                .values()
                .map(|n| n.saturating_sub(1))
                .sum::<usize>()
        })
        .sum()
}

fn heads_of(histories: &BTreeMap<SpaceId, Vec<Vec<Message>>>) -> HashMap<SpaceId, u64> {
    histories
        .iter()
        .map(|(s, h)| (s.clone(), h.last().map_or(0, |h| h.len() as u64)))
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

// ----- chaos through fault proxies -----

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Reset every connection.
    Cut,
    /// Forward nothing (sockets stay open) for a while.
    Stall(Duration),
    /// Latency per chunk and a bandwidth cap for a while.
    Slow {
        latency: Duration,
        bandwidth: u64,
        lasting: Duration,
    },
    /// Reset every connection and refuse new ones for a while.
    Refuse(Duration),
    /// Stop the region behind the proxy (state kept) and start it again after a while.
    Restart(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Step {
    at: Duration,
    proxy: usize,
    fault: Fault,
}

/// Faults for each proxy, one after another, from `rng`, over `span`.
fn chaos_schedule(rng: &mut Rng, proxies: usize, span: Duration) -> Vec<Step> {
    let ms = |n: u64| Duration::from_millis(n);
    let mut steps = Vec::new();
    for proxy in 0..proxies {
        let mut at = ms(rng.range(100..500));
        while at < span {
            // Long enough, often, to outlast the 1.5 s ack timeout and the 2 s connect
            // timeout, so stalls are noticed and reconnects meet a link still broken.
            let lasting = ms(rng.range(200..3000));
            let fault = match rng.range(0..100) {
                0..35 => Fault::Cut,
                35..60 => Fault::Stall(lasting),
                60..78 => Fault::Slow {
                    latency: ms(rng.range(20..400)),
                    bandwidth: rng.range(4..64) * 1024,
                    lasting,
                },
                78..92 => Fault::Refuse(lasting),
                _ => Fault::Restart(ms(rng.range(100..1500))),
            };
            steps.push(Step { at, proxy, fault });
            let busy = match fault {
                Fault::Cut => Duration::ZERO,
                _ => lasting,
            };
            at += busy + ms(rng.range(100..600));
        }
    }
    steps.sort_by_key(|s| s.at);
    steps
}

/// Carries out the schedule (each proxy's steps in turn, `regions[i]` behind `proxies[i]`);
/// heals everything at the end.
async fn run_chaos(
    fed: Arc<Federation>,
    proxies: Vec<(RegionId, Arc<FaultProxy>)>,
    steps: Vec<Step>,
) {
    let start = tokio::time::Instant::now();
    let per_proxy = proxies.into_iter().enumerate().map(|(i, (region, proxy))| {
        let mine: Vec<Step> = steps.iter().filter(|s| s.proxy == i).copied().collect();
        let fed = fed.clone();
        async move {
            for step in mine {
                tokio::time::sleep_until(start + step.at).await;
                let lasting = match step.fault {
                    Fault::Cut => {
                        proxy.cut();
                        None
                    }
                    Fault::Stall(d) => {
                        proxy.stall();
                        Some(d)
                    }
                    Fault::Slow {
                        latency,
                        bandwidth,
                        lasting,
                    } => {
                        proxy.slow(latency, Some(bandwidth));
                        Some(lasting)
                    }
                    Fault::Refuse(d) => {
                        proxy.refuse();
                        proxy.cut();
                        Some(d)
                    }
                    Fault::Restart(d) => {
                        fed.stop_region(&region).await.unwrap();
                        tokio::time::sleep(d).await;
                        fed.start_region(&region).await.unwrap();
                        None
                    }
                };
                if let Some(d) = lasting {
                    tokio::time::sleep(d).await;
                    proxy.heal();
                }
            }
            proxy.heal();
        }
    });
    futures::future::join_all(per_proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_the_links_to_the_regions_loses_duplicates_and_reorders_nothing() {
    let started = Instant::now();
    let seed = Rng::seed_from_env("FAULTS_SEED", 0x6d65_7269_6469_616e);
    let fed = Arc::new(
        Federation::start(FederationConfig::default_three_regions())
            .await
            .unwrap(),
    );
    let mut proxies = Vec::new();
    for id in ["eu-west", "us-east", "ca-central"] {
        let r = region(id);
        let proxy = Arc::new(proxy_in_front(&fed, &r).await);
        proxies.push((r, proxy));
    }

    // acme:general lives in eu-west, globex:launch in us-east, maple:lounge (data
    // sovereignty: sealed on the wire both ways) in ca-central. Each member takes part in
    // the spaces its policy lets it reach: Ana (eu-west only) in one, Sam (us-east, may use
    // eu-west and ca-central) in all three, Chloe (ca-central, may use us-east) in two.
    let (general, launch, lounge) = (
        space("acme:general"),
        space("globex:launch"),
        space("maple:lounge"),
    );
    let dir = Dir::of(&fed);
    let members = vec![
        member(&dir, "ana", quick_to_notice(), &[&general]).await,
        member(
            &dir,
            "sam",
            quick_to_notice(),
            &[&general, &launch, &lounge],
        )
        .await,
        member(&dir, "tom", quick_to_notice(), &[&general, &launch]).await,
        member(&dir, "chloe", quick_to_notice(), &[&launch, &lounge]).await,
        member(&dir, "leo", quick_to_notice(), &[&lounge]).await,
    ];

    let mut rng = Rng::new(seed);
    let span = Duration::from_millis(8000);
    let schedule = chaos_schedule(&mut rng, proxies.len(), span);
    println!("chaos seed {seed:#x}, schedule (proxy 0: eu-west, 1: us-east, 2: ca-central):");
    for step in &schedule {
        println!(
            "  {:>5} ms  proxy {}  {:?}",
            step.at.as_millis(),
            step.proxy,
            step.fault
        );
    }
    let count = |f: fn(&Fault) -> bool| schedule.iter().filter(|s| f(&s.fault)).count();
    let cuts = count(|f| matches!(f, Fault::Cut | Fault::Refuse(_)));
    let stalls = count(|f| matches!(f, Fault::Stall(_)));
    let slows = count(|f| matches!(f, Fault::Slow { .. }));
    let refusals = count(|f| matches!(f, Fault::Refuse(_)));
    let restarts = count(|f| matches!(f, Fault::Restart(_)));

    let senders = traffic(&members, 24, Duration::from_millis(330), "chaos");
    run_chaos(fed.clone(), proxies.clone(), schedule).await;
    let outcomes = outcomes(senders, Duration::from_secs(30)).await;
    let histories =
        single_histories([&general, &launch, &lounge].map(|s| (s.clone(), fed.messages(s))));
    settle(&members, &heads_of(&histories), Duration::from_secs(20)).await;

    let tally = tally(&members, &outcomes, &histories);
    let stats: Vec<_> = proxies.iter().map(|(_, p)| p.stats()).collect();
    let summary = tally.summary(
        "chaos",
        &[
            ("cuts", cuts.to_string()),
            ("stalls", stalls.to_string()),
            ("slows", slows.to_string()),
            ("refusals", refusals.to_string()),
            ("region_restarts", restarts.to_string()),
            (
                "connections_cut",
                stats.iter().map(|s| s.cut).sum::<u64>().to_string(),
            ),
            (
                "connections_refused",
                stats.iter().map(|s| s.refused).sum::<u64>().to_string(),
            ),
            ("reconnects", reconnects(&members).to_string()),
            ("seed", format!("{seed:#x}")),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert_eq!(
        tally.continuity_events, 0,
        "nothing was really lost: {summary}"
    );
    assert!(
        stats.iter().map(|s| s.cut).sum::<u64>() > 0 && stalls + slows > 0,
        "the schedule must actually hurt: {summary}"
    );
    drop(members);
    drop(proxies);
    if let Ok(fed) = Arc::try_unwrap(fed) {
        meridian_tests::residency_check!(fed);
        fed.shutdown().await;
    }
}

// ----- a member whose link freezes during a burst -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_link_freezes_during_a_burst_gets_every_message_once_it_thaws() {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let general = space("acme:general");
    let dir = Dir::of(&fed);
    // Ben's session is opened before the proxy is advertised: his link goes straight to
    // eu-west. Ana, who connects after, goes through the proxy (small kernel buffers on
    // its side, so that a frozen link pushes back on the region sooner).
    let ben = member(&dir, "ben", SessionConfig::default(), &[&general]).await;
    let options = ProxyOptions {
        socket_buffer: Some(8 * 1024),
    };
    let proxy = FaultProxy::start_with(fed.region_addr(&eu).unwrap(), options)
        .await
        .unwrap();
    fed.advertise_region(&eu, Some(proxy.ws_url())).unwrap();
    let ana = member(&dir, "ana", SessionConfig::default(), &[&general]).await;
    assert_eq!(proxy.stats().accepted, 1, "only Ana goes through the proxy");

    // Ana's link freezes (nothing read, nothing written, sockets open) while Ben sends a
    // burst of about 7 MB: more than the region's socket buffers hold for her. She has
    // nothing in flight, so nothing tells her yet; then the link thaws.
    proxy.stall();
    let burst = 600;
    let padding = "x".repeat(12_000);
    let mut outcomes = Vec::new();
    for i in 1..=burst {
        let sent = Sent {
            sender: "ben".into(),
            space: general.clone(),
            body: format!("burst|{i}|{padding}"),
        };
        let outcome = match ben.client.send_message(&general, &sent.body).await {
            Ok(pending) => pending.await.map(|r| r.seq).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        outcomes.push((sent, outcome));
    }
    let frozen_for = started.elapsed();
    proxy.heal();
    let histories = single_histories([(general.clone(), fed.messages(&general))]);
    let mut members = vec![ben, ana];
    settle(&members, &heads_of(&histories), Duration::from_secs(8)).await;
    let tally = tally(&members, &outcomes, &histories);
    let ana_head = delivered_head(&members[1].log.events(), &general);
    // What the region wrote to Ana's socket at all (the proxy forwards all it gets).
    let bytes_to_ana = proxy.stats().bytes_down;

    // What one more message does: Ana sees a hole, and fills it by rejoining.
    let nudge = Sent {
        sender: "ben".into(),
        space: general.clone(),
        body: "one more".into(),
    };
    let seq = members[0]
        .client
        .send_message(&general, &nudge.body)
        .await
        .unwrap()
        .await
        .unwrap()
        .seq;
    outcomes.push((nudge, Ok(seq)));
    let histories = single_histories([(general.clone(), fed.messages(&general))]);
    settle(&members, &heads_of(&histories), Duration::from_secs(8)).await;
    let after_nudge = self::tally(&members, &outcomes, &histories);
    let summary = tally.summary(
        "frozen-member",
        &[
            ("burst", burst.to_string()),
            ("frozen_for", secs(frozen_for)),
            ("ana_head_after_thaw", ana_head.to_string()),
            (
                "bytes_to_ana",
                format!("{:.1}MB", bytes_to_ana as f64 / 1e6),
            ),
            ("lost_after_one_more_message", after_nudge.lost.to_string()),
            ("reconnects", reconnects(&members).to_string()),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    after_nudge.assert_clean(&summary);
    members.clear();
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

// ----- a member catching up over a slow link -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_catching_up_a_full_page_over_a_slow_link_gets_there() {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let general = space("acme:general");
    let dir = Dir::of(&fed);
    // Ben goes straight to eu-west (his session is opened before the proxy is advertised);
    // Ana goes through the proxy.
    let ben = member(&dir, "ben", SessionConfig::default(), &[&general]).await;
    let proxy = proxy_in_front(&fed, &eu).await;
    let session = quick_to_notice();
    let ana = member(&dir, "ana", session, &[&general]).await;

    // Ana is cut off while Ben sends a full catch-up page (200 messages of 2 KB).
    proxy.refuse();
    proxy.cut();
    let page = 200;
    let padding = "y".repeat(2000);
    let mut outcomes = Vec::new();
    for i in 1..=page {
        let sent = Sent {
            sender: "ben".into(),
            space: general.clone(),
            body: format!("page|{i}|{padding}"),
        };
        let outcome = match ben.client.send_message(&general, &sent.body).await {
            Ok(pending) => pending.await.map(|r| r.seq).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        outcomes.push((sent, outcome));
    }
    // Her link comes back slow: 100 KB/s, so the page (about 420 KB) takes about 4 s to
    // arrive, longer than her ack timeout (1.5 s). The same holds with the default 10 s
    // for any link under about 42 KB/s (340 kbit/s).
    let bandwidth = 100 * 1024;
    proxy.heal();
    proxy.slow(Duration::ZERO, Some(bandwidth));
    let healed = Instant::now();
    let histories = single_histories([(general.clone(), fed.messages(&general))]);
    let members = vec![ben, ana];
    settle(&members, &heads_of(&histories), Duration::from_secs(15)).await;
    let caught_up_in = healed.elapsed();
    let tally = tally(&members, &outcomes, &histories);
    let stats = proxy.stats();
    let summary = tally.summary(
        "slow-catch-up",
        &[
            ("page", page.to_string()),
            ("bandwidth", format!("{}KB/s", bandwidth / 1024)),
            ("ack_timeout", secs(session.ack_timeout)),
            ("waited", secs(caught_up_in)),
            ("connections_to_ana", stats.accepted.to_string()),
            (
                "bytes_to_ana",
                format!("{:.1}MB", stats.bytes_down as f64 / 1e6),
            ),
            ("reconnects", reconnects(&members).to_string()),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_send_over_a_slow_uplink_is_stored_and_acknowledged() {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let general = space("acme:general");
    let dir = Dir::of(&fed);
    // Ana goes straight to eu-west; Sam, who connects after the proxy is advertised,
    // through it.
    let ana = member(&dir, "ana", SessionConfig::default(), &[&general]).await;
    let proxy = proxy_in_front(&fed, &eu).await;
    let session = quick_to_notice();
    let sam = member(&dir, "sam", session, &[&general]).await;

    // 12 KB over 4 KB/s: about 3 s on the wire, longer than Sam's 1.5 s ack timeout.
    // (With the default 10 s, the same happens to a 16 KB message under 1.6 KB/s.)
    let bandwidth = 4 * 1024;
    proxy.slow(Duration::ZERO, Some(bandwidth));
    let sent = Sent {
        sender: "sam".into(),
        space: general.clone(),
        body: format!("large|{}", "z".repeat(12_000)),
    };
    let pending = sam.client.send_message(&general, &sent.body).await.unwrap();
    let waited = Duration::from_secs(12);
    let outcome = match tokio::time::timeout(waited, pending).await {
        Ok(Ok(receipt)) => Ok(receipt.seq),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no receipt within {waited:?}")),
    };
    proxy.heal();
    let histories = single_histories([(general.clone(), fed.messages(&general))]);
    let members = vec![ana, sam];
    settle(&members, &heads_of(&histories), Duration::from_secs(5)).await;
    let got_receipt = outcome.is_ok();
    let tally = tally(&members, &[(sent, outcome)], &histories);
    let stats = proxy.stats();
    let summary = tally.summary(
        "slow-uplink",
        &[
            ("size", "12KB".into()),
            ("receipt", got_receipt.to_string()),
            ("bandwidth", format!("{}KB/s", bandwidth / 1024)),
            ("ack_timeout", secs(session.ack_timeout)),
            ("connections_from_sam", stats.accepted.to_string()),
            (
                "bytes_from_sam",
                format!("{:.2}MB", stats.bytes_up as f64 / 1e6),
            ),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

// ----- the directory down -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_made_while_the_directory_is_down_go_out_in_order_once_it_is_back() {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let random = space("globex:random");
    let dir = Dir::of(&fed);
    let tom = member(&dir, "tom", quick_to_notice(), &[&random]).await;
    // Sam has never used globex:random: his sends need the directory to find it.
    let sam = member(&dir, "sam", quick_to_notice(), &[]).await;
    fed.set_directory_fault(Some(devserver::DirectoryFault::Status500));
    let mut pending = Vec::new();
    for i in 1..=5 {
        let sent = Sent {
            sender: "sam".into(),
            space: random.clone(),
            body: format!("while the directory is down {i}"),
        };
        let send = sam
            .client
            .send_message(&random, &sent.body)
            .await
            .expect("a send is accepted while the directory is down");
        pending.push((sent, send));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored_while_down = fed.messages(&random).len();
    fed.set_directory_fault(None);
    let mut outcomes = Vec::new();
    for (sent, send) in pending {
        let outcome = match tokio::time::timeout(Duration::from_secs(10), send).await {
            Ok(Ok(receipt)) => Ok(receipt.seq),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no receipt within 10 s of the directory's return".into()),
        };
        outcomes.push((sent, outcome));
    }
    let histories = single_histories([(random.clone(), fed.messages(&random))]);
    let members = vec![tom, sam];
    settle(&members, &heads_of(&histories), Duration::from_secs(5)).await;
    let tally = tally(&members, &outcomes, &histories);
    let summary = tally.summary(
        "directory-down",
        &[
            ("stored_while_down", stored_while_down.to_string()),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert_eq!(stored_while_down, 0, "nothing could be located meanwhile");
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

// ----- a region restarted in the middle of traffic -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_restarted_in_the_middle_of_traffic_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let (general, launch) = (space("acme:general"), space("globex:launch"));
    let dir = Dir::of(&fed);
    let defaults = SessionConfig::default();
    let members = vec![
        member(&dir, "ana", defaults, &[&general]).await,
        member(&dir, "sam", defaults, &[&general, &launch]).await,
        member(&dir, "tom", defaults, &[&general, &launch]).await,
        member(&dir, "chloe", defaults, &[&launch]).await,
    ];
    let senders = traffic(&members, 12, Duration::from_millis(150), "restart");
    tokio::time::sleep(Duration::from_millis(600)).await;
    fed.stop_region(&eu).await.unwrap();
    let stored_before = fed.messages(&general).len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    fed.start_region(&eu).await.unwrap();

    let outcomes = outcomes(senders, Duration::from_secs(30)).await;
    let histories = single_histories([
        (general.clone(), fed.messages(&general)),
        (launch.clone(), fed.messages(&launch)),
    ]);
    settle(&members, &heads_of(&histories), Duration::from_secs(20)).await;
    let tally = tally(&members, &outcomes, &histories);
    let summary = tally.summary(
        "region-restart",
        &[
            ("stored_before_restart", stored_before.to_string()),
            ("reconnects", reconnects(&members).to_string()),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert_eq!(
        tally.continuity_events, 0,
        "nothing was really lost: {summary}"
    );
    assert!(
        stored_before > 0 && stored_before < histories[&general][0].len(),
        "the restart must fall in the middle of the traffic: {summary}"
    );
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_that_loses_its_state_mid_traffic_reports_continuity_lost_and_hides_nothing() {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let (general, launch) = (space("acme:general"), space("globex:launch"));
    let dir = Dir::of(&fed);
    let defaults = SessionConfig::default();
    // Sam, Tom and Chloe go straight to the regions; Ana, who connects after the proxy is
    // advertised, goes to eu-west through it.
    let mut members = vec![
        member(&dir, "sam", defaults, &[&general, &launch]).await,
        member(&dir, "tom", defaults, &[&general, &launch]).await,
        member(&dir, "chloe", defaults, &[&launch]).await,
    ];
    let proxy = proxy_in_front(&fed, &eu).await;
    members.push(member(&dir, "ana", defaults, &[&general]).await);
    let senders = traffic(&members, 12, Duration::from_millis(150), "wipe");
    // Ana is cut off for a while before the region loses its data: what was stored
    // meanwhile is gone before she could get it, which she must be told.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.refuse();
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Stopped first, so that what the region held when it lost it can be read.
    fed.stop_region(&eu).await.unwrap();
    let old_history = fed.messages(&general);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fed.restart_region_without_state(&eu).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.heal();

    let outcomes = outcomes(senders, Duration::from_secs(30)).await;
    let mut histories = single_histories([(launch.clone(), fed.messages(&launch))]);
    histories.insert(
        general.clone(),
        vec![old_history.clone(), fed.messages(&general)],
    );
    settle(&members, &heads_of(&histories), Duration::from_secs(20)).await;
    let tally = tally(&members, &outcomes, &histories);
    let members_of_general = members
        .iter()
        .filter(|m| m.joined.iter().any(|(s, _)| s == &general))
        .count() as u64;
    let summary = tally.summary(
        "region-wipe",
        &[
            ("stored_before_wipe", old_history.len().to_string()),
            (
                "stored_after_wipe",
                histories[&general][1].len().to_string(),
            ),
            ("expected_continuity_events", members_of_general.to_string()),
            ("reconnects", reconnects(&members).to_string()),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert_eq!(
        tally.continuity_events, members_of_general,
        "every member of the space that lost its history is told, once: {summary}"
    );
    assert!(
        tally.reported_lost > 0,
        "Ana missed messages that the region then lost: {summary}"
    );
    assert!(
        !old_history.is_empty() && !histories[&general][1].is_empty(),
        "the wipe must fall in the middle of the traffic: {summary}"
    );
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

// ----- the devserver process killed with SIGKILL -----

/// What a region's data file holds: its history epochs and its messages per space, in
/// the order written. Problems (unreadable lines, an idempotency key stored twice, more
/// than one sealing key) are listed.
fn read_journal(path: &Path) -> (usize, BTreeMap<SpaceId, Vec<Message>>, Vec<String>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut epochs = 0;
    let mut messages: BTreeMap<SpaceId, Vec<Message>> = BTreeMap::new();
    let mut keys: HashMap<(SpaceId, String), u64> = HashMap::new();
    let mut problems = Vec::new();
    let mut sealing_keys = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            problems.push(format!("{} line {} does not parse", path.display(), n + 1));
            continue;
        };
        match record["type"].as_str() {
            Some("epoch") => epochs += 1,
            Some("sealing_key") => {
                sealing_keys.insert(record["private"].to_string());
            }
            Some("message") => {
                let m: Message = serde_json::from_value(record["message"].clone())
                    .unwrap_or_else(|e| panic!("line {} holds no message: {e}", n + 1));
                let key = record["key"].as_str().unwrap_or_default().to_string();
                if let Some(first) = keys.insert((m.space.clone(), key.clone()), m.seq) {
                    problems.push(format!(
                        "key {key} is stored twice in {}: seqs {first} and {}",
                        m.space, m.seq
                    ));
                }
                messages.entry(m.space.clone()).or_default().push(m);
            }
            _ => {}
        }
    }
    if sealing_keys.len() > 1 {
        problems.push(format!(
            "{} holds {} different sealing keys: the region changed keys",
            path.display(),
            sealing_keys.len()
        ));
    }
    (epochs, messages, problems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_process_killed_with_sigkill_and_restarted_on_its_ports_loses_and_duplicates_nothing()
 {
    let started = Instant::now();
    let data = scratch_dir("faults-devserver");
    let server = DevserverProcess::start(&data).await;
    let ports = server.same_ports();
    let dir = Dir {
        url: server.directory_url().to_string(),
        keys: server.federation_keys().to_vec(),
    };
    let (general, launch, lounge) = (
        space("acme:general"),
        space("globex:launch"),
        space("maple:lounge"),
    );
    let defaults = SessionConfig::default();
    let members = vec![
        member(&dir, "ana", defaults, &[&general]).await,
        member(&dir, "sam", defaults, &[&general, &launch, &lounge]).await,
        member(&dir, "tom", defaults, &[&general, &launch]).await,
        member(&dir, "chloe", defaults, &[&lounge]).await,
    ];
    // Killed twice, at moments drawn from the seed: the second kill may land while the
    // clients are still recovering from the first.
    let seed = Rng::seed_from_env("FAULTS_SEED", 0x6b69_6c6c_2d39);
    let mut rng = Rng::new(seed);
    let senders = traffic(&members, 16, Duration::from_millis(150), "sigkill");
    let mut server = server;
    let mut down_for = Duration::ZERO;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(rng.range(300..1000))).await;
        server.kill_9().await;
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_millis(rng.range(50..600))).await;
        server = DevserverProcess::restart_on(&data, &ports).await;
        down_for += killed.elapsed();
        assert_eq!(server.directory_url(), dir.url, "back on the same ports");
    }

    let outcomes = outcomes(senders, Duration::from_secs(40)).await;
    let mut stored = BTreeMap::new();
    let mut journal_problems = Vec::new();
    let mut epochs = Vec::new();
    for id in ["eu-west", "us-east", "ca-central"] {
        let (e, messages, problems) = read_journal(&data.join(format!("region-{id}.jsonl")));
        epochs.push(e);
        stored.extend(messages);
        journal_problems.extend(problems);
    }
    let histories = single_histories(
        [&general, &launch, &lounge].map(|s| (s.clone(), stored.remove(s).unwrap_or_default())),
    );
    settle(&members, &heads_of(&histories), Duration::from_secs(20)).await;
    let mut tally = tally(&members, &outcomes, &histories);
    tally.problems.extend(journal_problems);
    let summary = tally.summary(
        "region-process-restart",
        &[
            ("kills", "2".to_string()),
            ("down_for", secs(down_for)),
            ("seed", format!("{seed:#x}")),
            ("reconnects", reconnects(&members).to_string()),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert_eq!(
        epochs,
        [1, 1, 1],
        "one history per region, kept across the kill"
    );
    assert_eq!(
        tally.continuity_events, 0,
        "nothing was really lost: {summary}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

// ----- a client process killed with sends pending -----

const FAULT_CLIENT: &str = env!("CARGO_BIN_EXE_fault-client");

fn fault_client(directory: &Dir, user: &str, store: &Path) -> ClientProcess {
    let keys = directory
        .keys
        .iter()
        .map(|k| format!("{}={}", k.id, k.public_key))
        .collect::<Vec<_>>()
        .join(",");
    ClientProcess::start(
        user,
        Path::new(FAULT_CLIENT),
        &[
            directory.url.clone(),
            user.to_string(),
            store.display().to_string(),
            keys,
        ],
    )
}

const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// `QUEUED <n> <key>,<key>,...` -> the keys.
fn queued_keys(line: &str) -> Vec<String> {
    line.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect()
}

/// The second run of the client: reports what it found, drains it, quits. Returns how
/// many sends it found pending, and key -> seq from its `SENT` lines.
async fn drain_in_a_new_process(
    directory: &Dir,
    user: &str,
    store: &Path,
) -> (usize, HashMap<String, u64>) {
    let mut again = fault_client(directory, user, store);
    let hello = again.expect("CONNECTED", PROCESS_WAIT).await;
    let pending: usize = hello
        .rsplit("pending=")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable {hello:?}"));
    again
        .send(&format!("drain {}", PROCESS_WAIT.as_millis()))
        .await;
    let mut receipts = HashMap::new();
    loop {
        let line = again.next_line(PROCESS_WAIT).await;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["SENT", key, seq] => {
                receipts.insert(key.to_string(), seq.parse().unwrap());
            }
            ["DRAINED", _] => break,
            _ => panic!("the drain ended with {line:?} (receipts so far {receipts:?})"),
        }
    }
    again.send("quit").await;
    assert_eq!(again.exit_code(PROCESS_WAIT).await, Some(0), "a clean exit");
    (pending, receipts)
}

/// Tallies a client-restart scenario: `bodies[i]` was sent with `keys[i]` (the last bodies
/// may have no key known); `receipts` holds what the second run reported, and must cover
/// every key when `every_receipt`.
#[allow(clippy::too_many_arguments)]
fn tally_restart(
    sender: &str,
    space: &SpaceId,
    bodies: &[String],
    keys: &[String],
    receipts: &HashMap<String, u64>,
    every_receipt: bool,
    receiver: &Member,
    stored: Vec<Message>,
) -> Tally {
    let histories = single_histories([(space.clone(), stored)]);
    let sent: Vec<Sent> = bodies
        .iter()
        .map(|b| Sent {
            sender: sender.to_string(),
            space: space.clone(),
            body: b.clone(),
        })
        .collect();
    let mut t = Tally::new();
    t.check_sends(&sent, &histories);
    for (s, key) in sent.iter().zip(keys) {
        match receipts.get(key) {
            Some(seq) => t.check_receipt(s, Ok(*seq), &histories),
            None if every_receipt => t.check_receipt(
                s,
                Err(format!("the second run reported no receipt for key {key}")),
                &histories,
            ),
            None => {}
        }
    }
    let events = receiver.log.events();
    for (s, joined_at) in &receiver.joined {
        t.check_deliveries(receiver.name, s, *joined_at, &events, &histories[s]);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_process_killed_with_sends_queued_while_its_region_was_unreachable_delivers_each_once_after_a_restart()
 {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let proxy = proxy_in_front(&fed, &eu).await;
    let general = space("acme:general");
    let dir = Dir::of(&fed);
    let ana = member(&dir, "ana", quick_to_notice(), &[&general]).await;
    let store = scratch_dir("faults-client-unreachable");
    let k = 5;

    // First run: eu-west refuses every new connection (Ana's stays up).
    proxy.refuse();
    let mut first = fault_client(&dir, "sam", &store);
    assert_eq!(
        first.expect("CONNECTED", PROCESS_WAIT).await,
        "CONNECTED sam pending=0"
    );
    first.send(&format!("send {general} {k} unreachable")).await;
    let keys = queued_keys(&first.expect("QUEUED", PROCESS_WAIT).await);
    assert_eq!(keys.len(), k);
    let refused = proxy
        .wait_for(PROCESS_WAIT, |s| s.refused >= 1)
        .await
        .expect("the client tried to reach eu-west and was refused");
    first.kill_9().await;
    assert!(
        fed.messages(&general).is_empty(),
        "nothing reached the region before the kill"
    );

    // Second run, region reachable: the sends come out of the store and go out once.
    proxy.heal();
    let (pending, receipts) = drain_in_a_new_process(&dir, "sam", &store).await;
    assert_eq!(
        pending, k,
        "the new process finds every send the killed one queued"
    );
    ana.log
        .wait_until(PROCESS_WAIT, |e| delivered_head(e, &general) >= k as u64)
        .await;
    ana.log
        .wait_quiet(Duration::from_millis(400), Duration::from_secs(5))
        .await;
    let bodies: Vec<String> = (1..=k).map(|i| format!("unreachable {i}")).collect();
    let tally = tally_restart(
        "sam",
        &general,
        &bodies,
        &keys,
        &receipts,
        true,
        &ana,
        fed.messages(&general),
    );
    let summary = tally.summary(
        "client-restart-unreachable",
        &[
            ("queued_before_kill", k.to_string()),
            ("connections_refused", refused.refused.to_string()),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert_eq!(tally.continuity_events, 0);
    let _ = std::fs::remove_dir_all(&store);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_process_killed_with_a_send_on_the_wire_has_it_stored_once_after_a_restart() {
    let started = Instant::now();
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let proxy = proxy_in_front(&fed, &eu).await;
    let general = space("acme:general");
    let dir = Dir::of(&fed);
    let ana = member(&dir, "ana", quick_to_notice(), &[&general]).await;
    let store = scratch_dir("faults-client-on-the-wire");
    let k = 5;

    // First run: connected and joined; then the link stalls and the sends are made. The
    // first goes on the wire (held by the stalled link, unanswered), the rest wait behind it.
    let mut first = fault_client(&dir, "sam", &store);
    first.expect("CONNECTED", PROCESS_WAIT).await;
    first.send(&format!("join {general}")).await;
    first.expect("JOINED", PROCESS_WAIT).await;
    proxy.stall();
    first.send(&format!("send {general} {k} wire")).await;
    let keys = queued_keys(&first.expect("QUEUED", PROCESS_WAIT).await);
    proxy
        .wait_for(PROCESS_WAIT, |s| s.held_up > 0)
        .await
        .expect("the first send is on the wire, held by the stalled link");
    first.kill_9().await;

    // The link heals after the process died: the held send reaches the region, which
    // stores it; nobody is left to hear the receipt.
    proxy.heal();
    let arrived = ana
        .log
        .wait_until(PROCESS_WAIT, |e| delivered_head(e, &general) >= 1)
        .await;
    assert!(
        arrived,
        "the send that was on the wire when the process died reached the region"
    );

    // Second run: every send is still pending; the first is sent again with its key.
    let (pending, receipts) = drain_in_a_new_process(&dir, "sam", &store).await;
    assert_eq!(
        pending, k,
        "the new process finds every send the killed one queued"
    );
    ana.log
        .wait_until(PROCESS_WAIT, |e| delivered_head(e, &general) >= k as u64)
        .await;
    ana.log
        .wait_quiet(Duration::from_millis(400), Duration::from_secs(5))
        .await;
    let sends_of_first_key = fed
        .tap(&eu)
        .unwrap()
        .events_from(&UserId::new("sam").unwrap())
        .iter()
        .filter(|r| match &r.kind {
            // Alone, or in a batch (the new process sends its five pending sends together).
            TapKind::Event { name, payload, .. } if name == "message:send" => {
                payload["key"] == keys[0].as_str()
            }
            TapKind::Event { name, payload, .. } if name == "message:send_batch" => {
                payload["messages"]
                    .as_array()
                    .is_some_and(|sends| sends.iter().any(|s| s["key"] == keys[0].as_str()))
            }
            _ => false,
        })
        .count();
    let bodies: Vec<String> = (1..=k).map(|i| format!("wire {i}")).collect();
    let tally = tally_restart(
        "sam",
        &general,
        &bodies,
        &keys,
        &receipts,
        true,
        &ana,
        fed.messages(&general),
    );
    let summary = tally.summary(
        "client-restart-on-the-wire",
        &[
            ("queued_before_kill", k.to_string()),
            (
                "first_send_received_by_region",
                sends_of_first_key.to_string(),
            ),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert_eq!(
        sends_of_first_key, 2,
        "the region got the first send twice (before the kill, and from the new process) and stored it once: {summary}"
    );
    let _ = std::fs::remove_dir_all(&store);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

/// A client process (`sender`) streams sends to `space` (housed in `region`) over a slow
/// link and is killed at a moment drawn from the seed; a new process on the same store
/// drains what is left; `receiver` (in the test process) watches the space.
async fn killed_mid_stream(
    name: &str,
    sender: &str,
    receiver: &'static str,
    space_id: &str,
    region_id: &str,
) {
    let started = Instant::now();
    let seed = Rng::seed_from_env("FAULTS_SEED", 0x6b69_6c6c);
    let mut rng = Rng::new(seed);
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let r = region(region_id);
    // A slow link, so that at the kill some sends are stored, one is on its way and the
    // rest wait in the outbox.
    let proxy = proxy_in_front(&fed, &r).await;
    let space = space(space_id);
    let dir = Dir::of(&fed);
    let watcher = member(&dir, receiver, quick_to_notice(), &[&space]).await;
    proxy.slow(Duration::from_millis(25), None);
    let store = scratch_dir("faults-client-mid-stream");
    let total = 40;
    let kill_after = rng.range(6..34) as usize;

    let mut first = fault_client(&dir, sender, &store);
    first.expect("CONNECTED", PROCESS_WAIT).await;
    first.send(&format!("join {space}")).await;
    first.expect("JOINED", PROCESS_WAIT).await;
    first
        .send(&format!("stream {space} {total} stream 8"))
        .await;
    let mut keys = Vec::new();
    while keys.len() < kill_after {
        let line = first.expect("PERSISTED", PROCESS_WAIT).await;
        keys.push(line.split_whitespace().nth(2).unwrap().to_string());
    }
    first.kill_9().await;
    let stored_at_kill = fed.messages(&space).len();
    proxy.heal();

    let (pending, receipts) = drain_in_a_new_process(&dir, sender, &store).await;
    let stored = fed.messages(&space);
    watcher
        .log
        .wait_until(PROCESS_WAIT, |e| {
            delivered_head(e, &space) >= stored.len() as u64
        })
        .await;
    watcher
        .log
        .wait_quiet(Duration::from_millis(400), Duration::from_secs(5))
        .await;
    // Every send confirmed before the kill must be stored once; the one being made at the
    // kill may be stored (it may have reached the store), at most once; nothing after it.
    let unconfirmed = format!("stream {}", kill_after + 1);
    let unconfirmed_stored = stored.iter().filter(|m| m.body == unconfirmed).count();
    let made = kill_after + usize::from(unconfirmed_stored > 0);
    let bodies: Vec<String> = (1..=made).map(|i| format!("stream {i}")).collect();
    let tally = tally_restart(
        sender, &space, &bodies, &keys, &receipts, false, &watcher, stored,
    );
    let summary = tally.summary(
        name,
        &[
            ("confirmed_before_kill", kill_after.to_string()),
            ("stored_at_kill", stored_at_kill.to_string()),
            ("pending_at_restart", pending.to_string()),
            ("unconfirmed_stored", unconfirmed_stored.to_string()),
            ("seed", format!("{seed:#x}")),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    assert!(unconfirmed_stored <= 1);
    let _ = std::fs::remove_dir_all(&store);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_process_killed_at_a_random_moment_while_sending_stores_each_confirmed_send_once()
{
    killed_mid_stream(
        "client-restart-mid-stream",
        "sam",
        "ana",
        "acme:general",
        "eu-west",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_process_killed_while_sending_sealed_messages_stores_each_confirmed_send_once() {
    // maple:lounge is a data-sovereignty space: sends travel sealed to the region's key,
    // and each is sealed again when the new process sends it again.
    killed_mid_stream(
        "client-restart-mid-stream-sealed",
        "chloe",
        "leo",
        "maple:lounge",
        "ca-central",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_process_killed_again_and_again_while_draining_stores_each_send_once() {
    let started = Instant::now();
    let seed = Rng::seed_from_env("FAULTS_SEED", 0x6c6f_6f70);
    let mut rng = Rng::new(seed);
    let fed = Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap();
    let eu = region("eu-west");
    let proxy = proxy_in_front(&fed, &eu).await;
    let general = space("acme:general");
    let dir = Dir::of(&fed);
    let ana = member(&dir, "ana", quick_to_notice(), &[&general]).await;
    let store = scratch_dir("faults-client-crash-loop");
    let k = 30;

    // First run: eu-west unreachable; the sends are queued; killed.
    proxy.refuse();
    let mut first = fault_client(&dir, "sam", &store);
    first.expect("CONNECTED", PROCESS_WAIT).await;
    first.send(&format!("send {general} {k} loop")).await;
    let keys = queued_keys(&first.expect("QUEUED", PROCESS_WAIT).await);
    first.kill_9().await;

    // Then a crash loop over a slow link: each run gets a few sends out and is killed.
    proxy.heal();
    proxy.slow(Duration::from_millis(20), None);
    let mut receipts = HashMap::new();
    let mut found = Vec::new();
    for _ in 0..3 {
        let mut run = fault_client(&dir, "sam", &store);
        let hello = run.expect("CONNECTED", PROCESS_WAIT).await;
        found.push(
            hello
                .rsplit("pending=")
                .next()
                .unwrap_or_default()
                .to_string(),
        );
        run.send(&format!("drain {}", PROCESS_WAIT.as_millis()))
            .await;
        let sends_before_kill = rng.range(1..6);
        let mut seen = 0;
        while seen < sends_before_kill {
            let line = run.next_line(PROCESS_WAIT).await;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["SENT", key, seq] => {
                    receipts.insert(key.to_string(), seq.parse::<u64>().unwrap());
                    seen += 1;
                }
                ["DRAINED", _] => break,
                _ => panic!("unexpected {line:?}"),
            }
        }
        run.kill_9().await;
    }
    proxy.heal();
    let (pending, last) = drain_in_a_new_process(&dir, "sam", &store).await;
    found.push(pending.to_string());
    receipts.extend(last);
    let stored = fed.messages(&general);
    ana.log
        .wait_until(PROCESS_WAIT, |e| {
            delivered_head(e, &general) >= stored.len() as u64
        })
        .await;
    ana.log
        .wait_quiet(Duration::from_millis(400), Duration::from_secs(5))
        .await;
    let bodies: Vec<String> = (1..=k).map(|i| format!("loop {i}")).collect();
    // A receipt may be lost with the run that would have printed it: not required.
    let tally = tally_restart(
        "sam", &general, &bodies, &keys, &receipts, false, &ana, stored,
    );
    let summary = tally.summary(
        "client-crash-loop",
        &[
            ("runs", "5".into()),
            ("pending_found_by_each_run", found.join("/")),
            ("seed", format!("{seed:#x}")),
            ("elapsed", secs(started.elapsed())),
        ],
    );
    println!("{summary}");
    tally.assert_clean(&summary);
    let _ = std::fs::remove_dir_all(&store);
    meridian_tests::residency_check!(fed);
    fed.shutdown().await;
}
