//! Notifications: what a user's home region tells them, wherever in the federation it
//! happened (a mention, a DM invite, a contact's presence).
//!
//! Owns: a region's inbox subscriptions (which sockets are a user's inbox here); finding
//! the users a stored message mentions; deciding whether a notification may reach its
//! target's home region (`meridian::policy::permits` with the policy that governs what the
//! notification says); delivering it directly when that home is this region, or sealing it
//! to the home region's published key and handing it to the relay; opening what the relay
//! brings; and emitting `notify` to the user's inbox sockets, sealed to each socket's
//! client key when the user is under data sovereignty.
//! Must never hand the relay anything but a sealed payload, never seal anything for a
//! region the governing policy forbids (such a notification is withheld, and recorded as
//! such in the relay tap), never log a notification's content, and never panic on what the
//! relay brings.
//!
//! A notification for a user with no inbox socket in their home region is dropped: there
//! is no store of notifications (a client that subscribes later does not get earlier ones).

use std::collections::HashMap;
use std::sync::Mutex;

use meridian::envelope::{self, Binding, SealingKey};
use meridian::model::{
    GeoPolicy, Message, Notification, PresenceStatus, RegionId, SpaceId, SpaceLocation, UserId,
};
use meridian::policy;
use meridian::protocol::{INBOX, Notify, event};
use serde::{Deserialize, Serialize};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;

use crate::region::RegionCtx;
use crate::relay::RelayEnvelope;
use crate::state::{Member, Shared, SpaceRecord, lock};
use crate::store::random_hex;

/// The pseudo space sealed notifications (to clients and between regions) are bound to.
fn inbox() -> SpaceId {
    SpaceId::new_unchecked(INBOX)
}

/// A socket that asked to be its user's inbox in this region.
struct Subscriber {
    socket: SocketRef,
    key: Option<SealingKey>,
}

/// The inbox sockets of a region, by user.
#[derive(Default)]
pub(crate) struct Inboxes {
    by_user: Mutex<HashMap<UserId, Vec<Subscriber>>>,
}

impl Inboxes {
    /// Makes `socket` an inbox of `user` (again: harmless), with the client's sealing key.
    pub fn subscribe(&self, user: &UserId, socket: SocketRef, key: Option<SealingKey>) {
        let mut by_user = lock(&self.by_user);
        let subscribers = by_user.entry(user.clone()).or_default();
        subscribers.retain(|s| s.socket.id != socket.id && s.socket.connected());
        subscribers.push(Subscriber { socket, key });
    }

    /// Forgets a socket (it disconnected).
    pub fn unsubscribe(&self, user: &UserId, sid: Sid) {
        let mut by_user = lock(&self.by_user);
        if let Some(subscribers) = by_user.get_mut(user) {
            subscribers.retain(|s| s.socket.id != sid);
            if subscribers.is_empty() {
                by_user.remove(user);
            }
        }
    }

    fn of(&self, user: &UserId) -> Vec<(SocketRef, Option<SealingKey>)> {
        lock(&self.by_user)
            .get(user)
            .map(|subscribers| {
                subscribers
                    .iter()
                    .map(|s| (s.socket.clone(), s.key.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The policy that decides where a notification may go: a policy and the home region of
/// whoever holds it (the company owning the space it is about, or the user it is about).
pub(crate) struct Governing {
    policy: GeoPolicy,
    home: RegionId,
}

impl Governing {
    /// The policy of the company that owns the space (`None` if the config does not know
    /// it: the notification is then withheld).
    fn of_space(shared: &Shared, location: &SpaceLocation) -> Option<Self> {
        let config = shared.config();
        let company = config.companies.iter().find(|c| c.id == location.company)?;
        let policy = config.policies.iter().find(|p| p.id == company.policy)?;
        Some(Self {
            policy: policy.clone(),
            home: company.home_region.clone(),
        })
    }

    /// The user's own policy.
    fn of_user(member: &Member) -> Self {
        Self {
            policy: member.ctx.policy.clone(),
            home: member.ctx.home_region.clone(),
        }
    }

    fn permits(&self, region: &RegionId) -> bool {
        policy::permits(&self.policy, &self.home, region)
    }
}

/// The plaintext of a relay envelope: who it is for and what it says.
#[derive(Serialize, Deserialize)]
struct Routed {
    to_user: UserId,
    notification: Notification,
}

fn kind(n: &Notification) -> &'static str {
    match n {
        Notification::Mention { .. } => "mention",
        Notification::DmInvite { .. } => "dm_invite",
        Notification::ContactPresence { .. } => "contact_presence",
    }
}

/// A message was stored in `record`'s space: every user its text mentions (`@<user id>`)
/// who may read the space, other than its sender, gets a mention at home, if the policy
/// of the space's owner permits their home region.
pub(crate) fn message_stored(ctx: &RegionCtx, record: &SpaceRecord, message: &Message) {
    let targets = mentioned(&message.body, |id| ctx.shared.member(id).is_some());
    if targets.is_empty() {
        return;
    }
    let governing = Governing::of_space(&ctx.shared, &record.location);
    for target in targets {
        let Some(member) = ctx.shared.member(&target) else {
            continue;
        };
        if member.id() == &message.sender
            || !record.admits(member.id())
            || policy::check_space_entry(&member.ctx, &record.location).is_err()
        {
            continue;
        }
        let notification = Notification::Mention {
            space: message.space.clone(),
            message_id: message.id.clone(),
            seq: message.seq,
            from: message.sender.clone(),
        };
        send(ctx, &member, notification, governing.as_ref());
    }
}

/// A DM was created: its peer gets an invite at home, if the policy of the DM's owner
/// (the creator's company) permits their home region.
pub(crate) fn dm_created(ctx: &RegionCtx, record: &SpaceRecord, from: &UserId, peer: &Member) {
    let governing = Governing::of_space(&ctx.shared, &record.location);
    let notification = Notification::DmInvite {
        space: record.location.space.clone(),
        from: from.clone(),
    };
    send(ctx, peer, notification, governing.as_ref());
}

/// A user set their presence: everyone who shares a DM with them learns it at home, if
/// the user's own policy permits that home region.
pub(crate) fn presence_set(ctx: &RegionCtx, member: &Member, status: PresenceStatus) {
    let governing = Governing::of_user(member);
    for contact in ctx.shared.dm_contacts(member.id()) {
        let Some(contact) = ctx.shared.member(&contact) else {
            continue;
        };
        let notification = Notification::ContactPresence {
            user: member.id().clone(),
            status,
        };
        send(ctx, &contact, notification, Some(&governing));
    }
}

/// Sends a notification to `to`'s home region: directly when that is this region,
/// through the relay (sealed to the home region's published key) otherwise; withheld when
/// the governing policy does not permit the home region.
fn send(ctx: &RegionCtx, to: &Member, notification: Notification, governing: Option<&Governing>) {
    let home = to.ctx.home_region.clone();
    let id = match random_hex(16) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(region = %ctx.id, error = %e, "no id for a notification: dropped");
            return;
        }
    };
    if !governing.is_some_and(|g| g.permits(&home)) {
        if home == ctx.id {
            tracing::debug!(region = %ctx.id, kind = kind(&notification), "notification withheld by policy");
        } else {
            ctx.relay.withhold(ctx.id.clone(), home, id);
        }
        return;
    }
    if home == ctx.id {
        deliver(ctx, to, &id, &notification);
        return;
    }
    let Some(home_key) = ctx.shared.region_public_key(&home) else {
        tracing::warn!(region = %ctx.id, to = %home, "the home region publishes no key: notification dropped");
        return;
    };
    let what = kind(&notification);
    let routed = Routed {
        to_user: to.id().clone(),
        notification,
    };
    let plaintext = match serde_json::to_vec(&routed) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(region = %ctx.id, error = %e, "a notification did not serialize: dropped");
            return;
        }
    };
    let space = inbox();
    let binding = Binding {
        space: &space,
        message: &id,
        region: &home,
    };
    match envelope::seal(&home_key, &binding, &plaintext) {
        Ok(sealed) => {
            tracing::debug!(region = %ctx.id, to = %home, kind = what, "notification relayed");
            ctx.relay.carry(RelayEnvelope {
                id,
                from_region: ctx.id.clone(),
                to_region: home,
                sealed,
            });
        }
        Err(e) => {
            tracing::warn!(region = %ctx.id, error = %e, "a notification could not be sealed: dropped");
        }
    }
}

/// Opens an envelope the relay brought and delivers it. Anything that fails (another
/// region, a payload that does not open with this region's key, a user not homed here)
/// is dropped with a warning that quotes nothing of it.
pub(crate) fn receive(ctx: &RegionCtx, envelope: RelayEnvelope) {
    if envelope.to_region != ctx.id {
        tracing::warn!(region = %ctx.id, to = %envelope.to_region, "an envelope for another region: dropped");
        return;
    }
    let key = ctx.store.key_pair();
    let space = inbox();
    let binding = Binding {
        space: &space,
        message: &envelope.id,
        region: &ctx.id,
    };
    let plaintext = match envelope::open(&key, &binding, &envelope.sealed) {
        Ok(bytes) => bytes,
        Err(_) => {
            tracing::warn!(
                region = %ctx.id, from = %envelope.from_region,
                "an envelope from the relay failed its integrity check: dropped"
            );
            return;
        }
    };
    let Ok(routed) = serde_json::from_slice::<Routed>(&plaintext) else {
        tracing::warn!(region = %ctx.id, from = %envelope.from_region, "an envelope holds no notification: dropped");
        return;
    };
    match ctx.shared.member(&routed.to_user) {
        Some(member) if member.ctx.home_region == ctx.id => {
            deliver(ctx, &member, &envelope.id, &routed.notification);
        }
        _ => {
            tracing::warn!(region = %ctx.id, from = %envelope.from_region, "an envelope for a user not homed here: dropped");
        }
    }
}

/// Emits `notify` to every inbox socket of `to` in this region: sealed to the socket's key
/// (bound to `inbox`, `id`, this region) for a user under DS, in the clear otherwise.
fn deliver(ctx: &RegionCtx, to: &Member, id: &str, notification: &Notification) {
    let subscribers = ctx.inboxes.of(to.id());
    if subscribers.is_empty() {
        tracing::debug!(region = %ctx.id, user = %to.id(), kind = kind(notification), "no inbox socket: notification dropped");
        return;
    }
    let sealed = policy::must_seal_in_transit(to.ctx.policy.residency);
    let plaintext = if sealed {
        match serde_json::to_vec(notification) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(region = %ctx.id, error = %e, "a notification did not serialize: dropped");
                return;
            }
        }
    } else {
        Vec::new()
    };
    let space = inbox();
    let binding = Binding {
        space: &space,
        message: id,
        region: &ctx.id,
    };
    for (socket, key) in subscribers {
        let notify = if sealed {
            // `inbox:subscribe` refuses a DS user's socket without a key; never in the clear.
            let Some(key) = key else { continue };
            match envelope::seal(&key, &binding, &plaintext) {
                Ok(payload) => Notify {
                    id: id.to_string(),
                    notification: None,
                    sealed: Some(payload),
                },
                Err(e) => {
                    tracing::warn!(region = %ctx.id, error = %e, "a notification could not be sealed: not sent");
                    continue;
                }
            }
        } else {
            Notify {
                id: id.to_string(),
                notification: Some(notification.clone()),
                sealed: None,
            }
        };
        if let Err(e) = socket.emit(event::NOTIFY, &notify) {
            tracing::debug!(region = %ctx.id, error = %e, "notify not sent");
        }
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
}

/// The users `text` mentions, in order, once each: `@` (not preceded by an id character,
/// so `ana@example.com` mentions nobody) followed by a user id for which `exists` holds.
/// Punctuation that ends a sentence (`@leo.`, `@leo:`) is not part of the id, unless the
/// id with it exists.
pub(crate) fn mentioned(text: &str, exists: impl Fn(&UserId) -> bool) -> Vec<UserId> {
    let bytes = text.as_bytes();
    let mut found: Vec<UserId> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i] == b'@' && (i == 0 || !is_id_byte(bytes[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && is_id_byte(bytes[end]) {
            end += 1;
        }
        let run = text.get(start..end).unwrap_or_default();
        let trimmed = run.trim_end_matches(['.', ':', '-', '_']);
        let hit = [run, trimmed]
            .into_iter()
            .filter_map(|candidate| UserId::new(candidate).ok())
            .find(|id| exists(id));
        if let Some(id) = hit
            && !found.contains(&id)
        {
            found.push(id);
        }
        i = end.max(start);
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn users(text: &str) -> Vec<String> {
        let known = ["ana", "leo", "chloe", "a.b"];
        mentioned(text, |id| known.contains(&id.as_str()))
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn mentions_are_at_signs_followed_by_existing_user_ids_once_each() {
        assert_eq!(users("hi @ana and @leo"), ["ana", "leo"]);
        assert_eq!(users("@ana @ana @ana"), ["ana"]);
        assert_eq!(
            users("thanks @leo. and @chloe: see @a.b."),
            ["leo", "chloe", "a.b"]
        );
        assert_eq!(
            users("mail ana@example.com or @nobody"),
            Vec::<String>::new()
        );
        assert_eq!(users("@@ana (@leo)"), ["ana", "leo"]);
        assert!(users("").is_empty() && users("@").is_empty() && users("@@@").is_empty());
        // Non-ASCII around a mention never breaks a char boundary.
        assert_eq!(users("¡@ana! café@leo é@chloe"), ["ana", "leo", "chloe"]);
        let long = format!("@{}", "x".repeat(10_000));
        assert!(users(&long).is_empty());
    }
}
