//! The JavaScript shape of the core's types: JSON text with camelCase fields, mirrored
//! one for one by the types in `bindings/ts/src/types.ts`, written field by field by
//! `meridian::json::ObjectWriter`.
//!
//! Owns: the mapping, and nothing else. Must never drop a field the TypeScript types
//! promise, nor add one they don't declare.

use meridian::json::ObjectWriter;
use meridian::model::{Message, Notification, SendReceipt, SessionInfo, SpaceLocation};
use meridian::outbox::{OutboxEntry, SendStatus};
use meridian::{ConnectionState, Error, Event, JoinedSpace};
use wasm_bindgen::JsValue;

fn error(w: &mut ObjectWriter<'_>, error: &Error) {
    let region = match error {
        Error::PolicyViolation { region, .. } => Some(region.as_str()),
        _ => None,
    };
    w.str("code", error.code().as_str())
        .str("message", &error.to_string())
        .opt_str("region", region);
}

/// A thrown `Error` whose `name` is `MeridianError`, with `code` (and `region` for policy
/// violations); the TypeScript layer turns it into the matching subclass.
pub(crate) fn error_value(error: &Error) -> JsValue {
    let thrown = js_sys::Error::new(&error.to_string());
    thrown.set_name("MeridianError");
    let set = |key: &str, value: &JsValue| {
        let _ = js_sys::Reflect::set(&thrown, &JsValue::from_str(key), value);
    };
    set("code", &JsValue::from_str(error.code().as_str()));
    if let Error::PolicyViolation { region, .. } = error {
        set("region", &JsValue::from_str(region.as_str()));
    }
    thrown.into()
}

pub(crate) fn message(w: &mut ObjectWriter<'_>, m: &Message) {
    w.str("space", m.space.as_str())
        .num("seq", m.seq)
        .str("id", m.id.as_str())
        .str("sender", m.sender.as_str())
        .str("body", &m.body)
        .num("sentAtMs", m.sent_at_ms);
}

pub(crate) fn receipt(w: &mut ObjectWriter<'_>, r: &SendReceipt) {
    w.str("messageId", r.message_id.as_str())
        .num("seq", r.seq)
        .num("sentAtMs", r.sent_at_ms);
}

pub(crate) fn session(w: &mut ObjectWriter<'_>, s: &SessionInfo) {
    w.str("user", s.user.as_str())
        .str("displayName", &s.display_name)
        .str("company", s.company.as_str())
        .str("homeRegion", s.home_region.as_str())
        .str("policy", s.policy.as_str())
        .opt_str("flavor", s.flavor.as_ref().map(|f| f.as_str()));
}

pub(crate) fn joined(w: &mut ObjectWriter<'_>, j: &JoinedSpace) {
    w.str("space", j.space.as_str()).num("headSeq", j.head_seq);
}

pub(crate) fn location(w: &mut ObjectWriter<'_>, l: &SpaceLocation) {
    w.str("space", l.space.as_str())
        .str("region", l.region.as_str())
        .str("company", l.company.as_str())
        .str("kind", l.kind.as_str())
        .str("residency", l.residency.as_str());
}

pub(crate) fn outbox_entry(w: &mut ObjectWriter<'_>, e: &OutboxEntry) {
    w.str("key", e.key.as_str())
        .str("space", e.space.as_str())
        .str("body", &e.body);
    match &e.status {
        SendStatus::Queued => w.str("status", "queued").null("error"),
        SendStatus::Failed { code, message } => w.str("status", "failed").object("error", |w| {
            w.str("code", code.as_str())
                .str("message", message)
                .null("region");
        }),
    };
}

pub(crate) fn connection_state(w: &mut ObjectWriter<'_>, state: &ConnectionState) {
    let name = match state {
        ConnectionState::Idle => "idle",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Offline => "offline",
        ConnectionState::Reconnecting { .. } => "reconnecting",
        ConnectionState::Closed => "closed",
    };
    w.str("state", name);
    if let ConnectionState::Reconnecting { attempt, retry_in } = state {
        w.num("attempt", u64::from(*attempt)).num(
            "retryInMs",
            u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        );
    }
}

fn notification(w: &mut ObjectWriter<'_>, n: &Notification) {
    match n {
        Notification::Mention {
            space,
            message_id,
            seq,
            from,
        } => w
            .str("kind", "mention")
            .str("space", space.as_str())
            .str("messageId", message_id.as_str())
            .num("seq", *seq)
            .str("from", from.as_str()),
        Notification::DmInvite { space, from } => w
            .str("kind", "dmInvite")
            .str("space", space.as_str())
            .str("from", from.as_str()),
        Notification::ContactPresence { user, status } => w
            .str("kind", "contactPresence")
            .str("user", user.as_str())
            .str("status", status.as_str()),
    };
}

pub(crate) fn event(w: &mut ObjectWriter<'_>, e: &Event) {
    match e {
        Event::MessageReceived(m) => w
            .str("type", "message")
            .object("message", |w| message(w, m)),
        Event::PresenceChanged(p) => w
            .str("type", "presence")
            .str("user", p.user.as_str())
            .str("status", p.status.as_str())
            .str("space", p.space.as_str()),
        Event::Typing(t) => w
            .str("type", "typing")
            .str("space", t.space.as_str())
            .opt_str("user", t.user.as_ref().map(|u| u.as_str()))
            .bool("typing", t.typing),
        Event::OverallConnectionChanged(state) => w
            .str("type", "connection")
            .object("state", |w| connection_state(w, state)),
        Event::ConnectionChanged { region, state } => w
            .str("type", "regionConnection")
            .str("region", region.as_str())
            .object("state", |w| connection_state(w, state)),
        Event::PolicyBlocked {
            region,
            space,
            reason,
        } => w
            .str("type", "policyBlocked")
            .str("region", region.as_str())
            .opt_str("space", space.as_ref().map(|s| s.as_str()))
            .str("reason", reason),
        Event::SubscriptionLost { space, error: e } => w
            .str("type", "subscriptionLost")
            .str("space", space.as_str())
            .object("error", |w| error(w, e)),
        Event::ContinuityLost { space, from, to } => w
            .str("type", "continuityLost")
            .str("space", space.as_str())
            .num("from", *from)
            .opt_num("to", *to),
        Event::MessageSent {
            key,
            space,
            receipt: r,
        } => w
            .str("type", "messageSent")
            .str("key", key.as_str())
            .str("space", space.as_str())
            .object("receipt", |w| receipt(w, r)),
        Event::SendFailed {
            key,
            space,
            error: e,
        } => w
            .str("type", "sendFailed")
            .str("key", key.as_str())
            .str("space", space.as_str())
            .object("error", |w| error(w, e)),
        Event::FederationDocumentRefused { error: e } => w
            .str("type", "federationDocumentRefused")
            .object("error", |w| error(w, e)),
        Event::Notification(n) => w
            .str("type", "notification")
            .object("notification", |w| notification(w, n)),
        Event::RegionProblem { region, error: e } => w
            .str("type", "regionProblem")
            .str("region", region.as_str())
            .object("error", |w| error(w, e)),
    };
}
