//! The demo federation and its users, as the suites use them.

use devserver::{Federation, FederationConfig};
use futures::Stream;
use meridian::{Client, Event};

/// A client's event stream, boxed so suites can hold several.
pub type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

/// The default three-region federation, started in-process.
pub async fn federation() -> Federation {
    Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap_or_else(|e| panic!("the devserver starts: {e}"))
}

/// Connects a demo user (token `<user>-token`) with the federation's key pinned, and opens
/// its event stream.
pub async fn client(fed: &Federation, user: &str) -> (Client, Events) {
    let client = Client::connect_native(fed.client_config(format!("{user}-token")))
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    let events: Events = Box::pin(client.events());
    (client, events)
}
