//! Quickstart: a whole federation of three regions in this process, and feature code for
//! users homed in different regions that never names a region.
//!
//! Run it with `cargo run --example quickstart`.

// This example is a story told on the terminal.
#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::time::Duration;

use devserver::{Federation, FederationConfig};
use futures::{Stream, StreamExt};
use meridian::model::{Notification, PresenceStatus, RegionId, SpaceId, UserId};
use meridian::{Client, ConnectionState, Error, Event};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let config = FederationConfig::default_three_regions();
    let federation = Federation::start(config.clone()).await?;
    println!("Meridian quickstart: a federation of three regions, running in this process.");
    println!("  directory   {}", federation.directory_url());
    for region in &config.regions {
        let url = federation.region_socket_url(&region.id).unwrap_or_default();
        println!("  {:<11} {:<22} {url}", region.id.as_str(), region.name);
    }
    println!();

    // The app pins the federation's signing key: documents signed by anything else are refused.
    let connect = |token: &str| Client::connect_native(federation.client_config(token));
    let ana = connect("ana-token").await?;
    let sam = connect("sam-token").await?;
    let chloe = connect("chloe-token").await?;
    for c in [&ana, &sam, &chloe] {
        let s = c.session();
        println!(
            "{} ({}) signs in: homed in {}, policy {}.",
            s.display_name, s.company, s.home_region, s.policy
        );
    }
    println!();

    // One stream per client only watches connection states, to count the regions used.
    let observers: Vec<_> = [&ana, &sam, &chloe].iter().map(|c| c.events()).collect();
    let mut ana_events = ana.events();
    let mut sam_events = sam.events();
    let mut chloe_events = chloe.events();
    let mut delivered = 0usize;
    let mut refusals = 0usize;

    // 1. A space housed in Europe, used from the US.
    let general = SpaceId::new("acme:general")?;
    println!(
        "1. Ana and Sam join #acme:general. Neither names a region; the SDK asks the directory."
    );
    ana.join_space(&general).await?;
    sam.join_space(&general).await?;
    let receipt = sam
        .send_message(&general, "Morning from Virginia! Deploy is green.")
        .await?
        .await?;
    println!(
        "   Sam says hello. The eu-west region stored it as message #{} of the space.",
        receipt.seq
    );
    for (name, events) in [("Ana", &mut ana_events), ("Sam", &mut sam_events)] {
        let m = next_message(events).await?;
        delivered += 1;
        println!("   {name} receives #{} from {}.", m.seq, m.sender);
    }
    let reply = ana
        .send_message(&general, "Great, thanks Sam.")
        .await?
        .await?;
    for (name, events) in [("Ana", &mut ana_events), ("Sam", &mut sam_events)] {
        let m = next_message(events).await?;
        delivered += 1;
        println!("   {name} receives #{} from {}.", m.seq, m.sender);
    }
    assert_eq!(reply.seq, receipt.seq + 1);

    // 2. A space housed in the US, used from Canada.
    let launch = SpaceId::new("globex:launch")?;
    println!();
    println!(
        "2. Chloe (Canada) and Sam meet in #globex:launch, housed in us-east, which Chloe's policy permits."
    );
    chloe.join_space(&launch).await?;
    sam.join_space(&launch).await?;
    chloe
        .send_message(&launch, "Maple is ready for the launch.")
        .await?
        .await?;
    for (name, events) in [("Chloe", &mut chloe_events), ("Sam", &mut sam_events)] {
        let m = next_message(events).await?;
        delivered += 1;
        println!(
            "   {name} receives #{} from {} in {}.",
            m.seq, m.sender, m.space
        );
    }
    let lounge = SpaceId::new("maple:lounge")?;
    println!();
    println!("   #maple:lounge (ca-central) is under data sovereignty: Maple's policy is DS.");
    sam.join_space(&lounge).await?;
    chloe.join_space(&lounge).await?;
    let secret = "Hello Montréal! Q3 numbers attached.";
    sam.send_message(&lounge, secret).await?.await?;
    println!("   Sam's text is sealed on his device to ca-central's published key (HPKE),");
    println!("   and each copy the region sends out is sealed to its reader's own key.");
    for (name, events) in [("Chloe", &mut chloe_events), ("Sam", &mut sam_events)] {
        let m = next_message(events).await?;
        delivered += 1;
        println!(
            "   {name} receives #{} from {} in {} and reads it: {:?}.",
            m.seq, m.sender, m.space, m.body
        );
    }
    if let Some(tap) = federation.tap(&RegionId::new("ca-central")?) {
        println!(
            "   What ca-central received: {} frames, {} of them sealed; the text readable in {}.",
            tap.frames(),
            tap.sealed_frames(),
            if tap.never_saw_text(secret) {
                "none"
            } else {
                "SOME"
            }
        );
    }
    let ana_lounge = ana.join_space(&lounge).await;
    if let Err(Error::PolicyViolation { reason, .. }) = &ana_lounge {
        refusals += 1;
        println!("   Ana (eu-strict) tries to enter it too. Refused: {reason}.");
    } else {
        return Err(format!("expected a policy refusal, got {ana_lounge:?}").into());
    }
    println!();
    sam.send_message(&launch, "@chloe the launch checklist is ready for you")
        .await?
        .await?;
    // Chloe gets the message (she is in the space) and, separately, the mention.
    let (mut mention, mut got_message) = (None, false);
    while mention.is_none() || !got_message {
        let event = next_matching(&mut chloe_events, |e| match e {
            Event::Notification(n @ Notification::Mention { .. }) => Some(Some(n)),
            Event::MessageReceived(_) => Some(None),
            _ => None,
        })
        .await?;
        match event {
            Some(n) => mention = Some(n),
            None => got_message = true,
        }
    }
    if let Some(Notification::Mention { space, from, .. }) = mention {
        println!("   Sam mentions @chloe in {space}. Chloe is told at home, in ca-central:");
        println!("   us-east sealed the notice to ca-central's key and the relay between them");
        println!("   carried only ciphertext. Chloe sees: {from} mentioned you in {space}.");
    }
    let _ = next_message(&mut sam_events).await?;
    delivered += 2;
    chloe.set_presence(PresenceStatus::Away).await?;
    let presence = next_presence(&mut sam_events).await?;
    println!(
        "   Chloe steps away; Sam sees her as {:?}.",
        presence.status
    );

    // 3. The policy says no, before a byte leaves Chloe's device.
    println!();
    println!("3. Chloe tries to join #acme:general, housed in eu-west.");
    match chloe.join_space(&general).await {
        Err(Error::PolicyViolation { region, reason }) => {
            refusals += 1;
            let reached = federation
                .tap(&region)
                .map(|t| t.events_from(&chloe.session().user).len())
                .unwrap_or_default();
            println!("   Refused: {reason}.");
            println!("   Frames from Chloe that reached {region}: {reached}.");
        }
        other => return Err(format!("expected a policy refusal, got {other:?}").into()),
    }

    // 4. A DM, housed where both users' policies allow.
    println!();
    println!("4. Sam opens a DM with Chloe.");
    let dm = sam.create_dm(&UserId::new("chloe")?).await?;
    println!(
        "   The DM {} is housed in {}, a region both policies permit.",
        dm.space, dm.region
    );
    chloe.join_space(&dm.space).await?;
    sam.join_space(&dm.space).await?;
    sam.send_message(&dm.space, "Launch party at 5?")
        .await?
        .await?;
    for (name, events) in [("Chloe", &mut chloe_events), ("Sam", &mut sam_events)] {
        let m = next_message(events).await?;
        delivered += 1;
        println!("   {name} receives #{} in the DM.", m.seq);
    }

    let mut regions = BTreeSet::new();
    for mut events in observers {
        while let Some(Some(event)) = events.now_or_never_ready() {
            if let Event::ConnectionChanged {
                region,
                state: ConnectionState::Connected,
            } = event
            {
                regions.insert(region);
            }
        }
    }
    for c in [&ana, &sam, &chloe] {
        c.disconnect().await;
    }
    federation.shutdown().await;
    println!();
    println!(
        "quickstart ok: {delivered} messages delivered, {} regions used, {refusals} policy refusal{}",
        regions.len(),
        if refusals == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Polls a stream without waiting: `Some(item)` if one is ready now.
trait NowOrNever: Stream + Unpin {
    fn now_or_never_ready(&mut self) -> Option<Option<Self::Item>> {
        futures::FutureExt::now_or_never(self.next())
    }
}
impl<S: Stream + Unpin> NowOrNever for S {}

async fn next_matching<T>(
    events: &mut (impl Stream<Item = Event> + Unpin),
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Result<T, Box<dyn std::error::Error>> {
    let wait = async {
        while let Some(event) = events.next().await {
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| "timed out waiting for an event")?
        .ok_or_else(|| "the event stream ended".into())
}

async fn next_message(
    events: &mut (impl Stream<Item = Event> + Unpin),
) -> Result<meridian::model::Message, Box<dyn std::error::Error>> {
    next_matching(events, |e| match e {
        Event::MessageReceived(m) => Some(m),
        _ => None,
    })
    .await
}

async fn next_presence(
    events: &mut (impl Stream<Item = Event> + Unpin),
) -> Result<meridian::protocol::PresenceEvent, Box<dyn std::error::Error>> {
    next_matching(events, |e| match e {
        Event::PresenceChanged(p) => Some(p),
        _ => None,
    })
    .await
}
