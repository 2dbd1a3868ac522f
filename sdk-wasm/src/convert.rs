//! The JavaScript shape of the core's types: JSON with camelCase fields, mirrored one for
//! one by the types in `bindings/ts/src/types.ts`.
//!
//! Owns: the mapping, and nothing else. Must never drop a field the TypeScript types
//! promise, nor add one they don't declare.

use meridian::model::{Message, Notification, SendReceipt, SessionInfo, SpaceLocation};
use meridian::outbox::{OutboxEntry, SendStatus};
use meridian::{ConnectionState, Error, Event, JoinedSpace};
use serde_json::{Value, json};
use wasm_bindgen::JsValue;

pub(crate) fn error_json(error: &Error) -> Value {
    let region = match error {
        Error::PolicyViolation { region, .. } => Some(region.to_string()),
        _ => None,
    };
    json!({ "code": error.code().as_str(), "message": error.to_string(), "region": region })
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

pub(crate) fn message(m: &Message) -> Value {
    json!({
        "space": m.space.as_str(),
        "seq": m.seq,
        "id": m.id.as_str(),
        "sender": m.sender.as_str(),
        "body": m.body,
        "sentAtMs": m.sent_at_ms,
    })
}

pub(crate) fn receipt(r: &SendReceipt) -> Value {
    json!({ "messageId": r.message_id.as_str(), "seq": r.seq, "sentAtMs": r.sent_at_ms })
}

pub(crate) fn session(s: &SessionInfo) -> Value {
    json!({
        "user": s.user.as_str(),
        "displayName": s.display_name,
        "company": s.company.as_str(),
        "homeRegion": s.home_region.as_str(),
        "policy": s.policy.as_str(),
        "flavor": s.flavor.as_ref().map(|f| f.as_str()),
    })
}

pub(crate) fn joined(j: &JoinedSpace) -> Value {
    json!({ "space": j.space.as_str(), "headSeq": j.head_seq })
}

pub(crate) fn location(l: &SpaceLocation) -> Value {
    json!({
        "space": l.space.as_str(),
        "region": l.region.as_str(),
        "company": l.company.as_str(),
        "kind": l.kind.as_str(),
        "residency": l.residency.as_str(),
    })
}

pub(crate) fn outbox_entry(e: &OutboxEntry) -> Value {
    let (status, error) = match &e.status {
        SendStatus::Queued => ("queued", Value::Null),
        SendStatus::Failed { code, message } => (
            "failed",
            json!({ "code": code.as_str(), "message": message, "region": null }),
        ),
    };
    json!({
        "key": e.key.as_str(),
        "space": e.space.as_str(),
        "body": e.body,
        "status": status,
        "error": error,
    })
}

pub(crate) fn connection_state(state: &ConnectionState) -> Value {
    match state {
        ConnectionState::Idle => json!({ "state": "idle" }),
        ConnectionState::Connecting => json!({ "state": "connecting" }),
        ConnectionState::Connected => json!({ "state": "connected" }),
        ConnectionState::Offline => json!({ "state": "offline" }),
        ConnectionState::Reconnecting { attempt, retry_in } => json!({
            "state": "reconnecting",
            "attempt": attempt,
            "retryInMs": u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        }),
        ConnectionState::Closed => json!({ "state": "closed" }),
    }
}

fn notification(n: &Notification) -> Value {
    match n {
        Notification::Mention {
            space,
            message_id,
            seq,
            from,
        } => json!({
            "kind": "mention",
            "space": space.as_str(),
            "messageId": message_id.as_str(),
            "seq": seq,
            "from": from.as_str(),
        }),
        Notification::DmInvite { space, from } => json!({
            "kind": "dmInvite", "space": space.as_str(), "from": from.as_str(),
        }),
        Notification::ContactPresence { user, status } => json!({
            "kind": "contactPresence", "user": user.as_str(), "status": status.as_str(),
        }),
    }
}

pub(crate) fn event(e: &Event) -> Value {
    match e {
        Event::MessageReceived(m) => json!({ "type": "message", "message": message(m) }),
        Event::PresenceChanged(p) => json!({
            "type": "presence",
            "user": p.user.as_str(),
            "status": p.status.as_str(),
            "space": p.space.as_str(),
        }),
        Event::Typing(t) => json!({
            "type": "typing",
            "space": t.space.as_str(),
            "user": t.user.as_ref().map(|u| u.as_str()),
            "typing": t.typing,
        }),
        Event::OverallConnectionChanged(state) => {
            json!({ "type": "connection", "state": connection_state(state) })
        }
        Event::ConnectionChanged { region, state } => json!({
            "type": "regionConnection",
            "region": region.as_str(),
            "state": connection_state(state),
        }),
        Event::PolicyBlocked {
            region,
            space,
            reason,
        } => json!({
            "type": "policyBlocked",
            "region": region.as_str(),
            "space": space.as_ref().map(|s| s.as_str()),
            "reason": reason,
        }),
        Event::SubscriptionLost { space, error } => json!({
            "type": "subscriptionLost", "space": space.as_str(), "error": error_json(error),
        }),
        Event::ContinuityLost { space, from, to } => json!({
            "type": "continuityLost", "space": space.as_str(), "from": from, "to": to,
        }),
        Event::MessageSent {
            key,
            space,
            receipt: r,
        } => json!({
            "type": "messageSent",
            "key": key.as_str(),
            "space": space.as_str(),
            "receipt": receipt(r),
        }),
        Event::SendFailed { key, space, error } => json!({
            "type": "sendFailed",
            "key": key.as_str(),
            "space": space.as_str(),
            "error": error_json(error),
        }),
        Event::FederationDocumentRefused { error } => {
            json!({ "type": "federationDocumentRefused", "error": error_json(error) })
        }
        Event::Notification(n) => {
            json!({ "type": "notification", "notification": notification(n) })
        }
        Event::RegionProblem { region, error } => json!({
            "type": "regionProblem", "region": region.as_str(), "error": error_json(error),
        }),
    }
}
