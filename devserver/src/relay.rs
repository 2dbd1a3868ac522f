//! The relay between regions: how a notification raised in one region reaches a user
//! whose home is another.
//!
//! Owns: carrying [`RelayEnvelope`]s from one region to another (in-process: a small router
//! from a region id to that region's receiving end), and recording every envelope it
//! carried, and every notification a region withheld instead of handing it over, in the
//! [`RelayTap`]. What it sees of an envelope is two region ids, a random id, and sealed
//! bytes.
//! Must never carry anything but a sealed payload (an envelope has no room for anything
//! else), never open one (it holds no key), never decide a policy question (the sending
//! region does, before it seals), and never log what it carries.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, Weak};

use meridian::envelope::SealedPayload;
use meridian::model::RegionId;

use crate::tap::RelayTap;

/// What crosses from one region to another: sealed to the receiving region's published
/// key, bound to (space `inbox`, message `id`, region `to_region`).
#[derive(Debug, Clone)]
pub(crate) struct RelayEnvelope {
    /// Random, unique per envelope: the sealed payload is bound to it.
    pub id: String,
    /// The region that sealed it.
    pub from_region: RegionId,
    /// The region it is sealed to.
    pub to_region: RegionId,
    /// The payload, which only `to_region` can open.
    pub sealed: SealedPayload,
}

/// The receiving end of a region.
pub(crate) trait RelayEndpoint: Send + Sync {
    /// Takes an envelope the relay carried to this region. Must not block or panic.
    fn receive(&self, envelope: RelayEnvelope);
}

/// The router between the regions of one federation.
pub(crate) struct Relay {
    endpoints: RwLock<HashMap<RegionId, Weak<dyn RelayEndpoint>>>,
    tap: RelayTap,
}

impl Relay {
    /// A relay with no region attached yet.
    pub fn new() -> Self {
        Self {
            endpoints: RwLock::default(),
            tap: RelayTap::new(),
        }
    }

    /// Attaches a region's receiving end (held weakly: a region outlives nothing).
    pub fn attach(&self, region: RegionId, endpoint: Weak<dyn RelayEndpoint>) {
        self.endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region, endpoint);
    }

    /// The relay's tap (shares its log).
    pub fn tap(&self) -> &RelayTap {
        &self.tap
    }

    /// Carries an envelope to its region (recorded first). An envelope for a region that
    /// is not attached is dropped.
    pub fn carry(&self, envelope: RelayEnvelope) {
        self.tap.record(
            envelope.from_region.clone(),
            envelope.to_region.clone(),
            envelope.id.clone(),
            Some(envelope.sealed.clone()),
        );
        let endpoint = self
            .endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&envelope.to_region)
            .and_then(Weak::upgrade);
        match endpoint {
            Some(endpoint) => endpoint.receive(envelope),
            None => tracing::warn!(
                from = %envelope.from_region, to = %envelope.to_region,
                "an envelope for a region the relay does not know: dropped"
            ),
        }
    }

    /// Records that `from` withheld a notification for `to` (a policy forbids `to` to
    /// hold it): nothing is sealed, nothing is sent.
    pub fn withhold(&self, from: RegionId, to: RegionId, id: String) {
        tracing::debug!(%from, %to, "notification withheld by policy");
        self.tap.record(from, to, id, None);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use meridian::envelope::{Binding, KeyPair, seal};
    use meridian::model::SpaceId;

    use super::*;

    #[derive(Default)]
    struct Catch(Mutex<Vec<RelayEnvelope>>);

    impl RelayEndpoint for Catch {
        fn receive(&self, envelope: RelayEnvelope) {
            self.0.lock().unwrap().push(envelope);
        }
    }

    #[test]
    fn the_relay_delivers_to_the_attached_region_and_its_tap_sees_only_ids_and_sealed_bytes() {
        let relay = Relay::new();
        let ca = RegionId::new_unchecked("ca-central");
        let us = RegionId::new_unchecked("us-east");
        let catch = Arc::new(Catch::default());
        let weak: Weak<dyn RelayEndpoint> = Arc::downgrade(&(catch.clone() as Arc<_>));
        relay.attach(ca.clone(), weak);
        let key = KeyPair::generate();
        let inbox = SpaceId::new_unchecked("inbox");
        let sealed = seal(
            key.public(),
            &Binding {
                space: &inbox,
                message: "e1",
                region: &ca,
            },
            b"{\"to_user\":\"chloe\"}",
        )
        .unwrap();
        relay.carry(RelayEnvelope {
            id: "e1".into(),
            from_region: us.clone(),
            to_region: ca.clone(),
            sealed,
        });
        relay.withhold(us.clone(), RegionId::new_unchecked("eu-west"), "e2".into());
        // A region nobody attached: recorded, dropped, no panic.
        relay.carry(RelayEnvelope {
            id: "e3".into(),
            from_region: us.clone(),
            to_region: RegionId::new_unchecked("mars"),
            sealed: catch.0.lock().unwrap()[0].sealed.clone(),
        });
        assert_eq!(catch.0.lock().unwrap().len(), 1);
        let tap = relay.tap();
        assert_eq!((tap.frames(), tap.sealed_frames()), (2, 2));
        assert_eq!(tap.withheld().len(), 1);
        assert_eq!(tap.carried(&us, &ca).len(), 1);
        assert!(tap.saw_text("ca-central") && !tap.saw_text("chloe"));
    }
}
