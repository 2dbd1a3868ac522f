//! The application protocol on top of Socket.IO, shared by the SDK and the devserver.
//!
//! Owns: event names and payload shapes, as documented in PROTOCOL.md. Must never hold
//! behaviour: both ends build on these types, so a change here is a protocol change.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::{Fields, FromJson, ObjectWriter, Read, ToJson, struct_from_json};

use crate::error::ErrorCode;
use crate::model::{
    IdempotencyKey, Message, PresenceStatus, RegionId, SendReceipt, SpaceId, SpaceLocation, UserId,
};

/// Version of the application protocol, sent in the connect auth payload.
pub const PROTOCOL_VERSION: u32 = 1;

/// Most messages a region returns in one page (join catch-up or history).
pub const MAX_PAGE: usize = 200;

/// Most sends in one `message:send_batch`.
pub const MAX_BATCH: usize = 64;

/// Event names, client to region (all answered with an ack unless noted).
pub mod event {
    /// Join a space, catching up from `since`.
    pub const SPACE_JOIN: &str = "space:join";
    /// Leave a space.
    pub const SPACE_LEAVE: &str = "space:leave";
    /// Send a message.
    pub const MESSAGE_SEND: &str = "message:send";
    /// Send several messages to one space, stored in the order listed.
    pub const MESSAGE_SEND_BATCH: &str = "message:send_batch";
    /// Read a page of history.
    pub const HISTORY: &str = "history";
    /// Set the user's presence in this region.
    pub const PRESENCE_SET: &str = "presence:set";
    /// Typing indicator (no ack).
    pub const TYPING: &str = "typing";
    /// Create (or find) a DM with a peer, housed in this region.
    pub const DM_CREATE: &str = "dm:create";
    /// Ask the (home) region to deliver the user's notifications on this socket.
    pub const INBOX_SUBSCRIBE: &str = "inbox:subscribe";

    /// Region to client: a message stored in a joined space.
    pub const MESSAGE: &str = "message";
    /// Region to client: a member's presence changed.
    pub const PRESENCE: &str = "presence";
    /// Region to client: a member is typing.
    pub const TYPING_EVENT: &str = "typing";
    /// Region to client: an error not tied to a request.
    pub const ERROR: &str = "error";
    /// Region to client: a [`super::Notify`].
    pub const NOTIFY: &str = "notify";
}

/// Region to client: `notify`, a notification in the clear or sealed to the client's key
/// (bound to space `inbox`, message `id`, and the region that delivers it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// Unique per notification: part of the sealed binding.
    pub id: String,
    /// The notification, when it travels in the clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<crate::model::Notification>,
    /// The notification's JSON, sealed, for users under a data-sovereignty policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::envelope::SealedPayload>,
}

/// The pseudo space id sealed notifications are bound to.
pub const INBOX: &str = "inbox";

/// The auth payload of the Socket.IO CONNECT packet.
#[derive(Clone, Serialize, Deserialize)]
pub struct Auth {
    /// The bearer token (never logged).
    pub token: String,
    /// The application protocol version.
    pub protocol: u32,
    /// The client's sealing key: what the region seals data-sovereignty payloads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<crate::envelope::SealingKey>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &"<redacted>")
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// The body of every error the protocol carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// A developer-facing explanation (never user content).
    pub message: String,
    /// The region concerned, for policy violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionId>,
}

impl From<&crate::Error> for ErrorBody {
    fn from(e: &crate::Error) -> Self {
        let region = match e {
            crate::Error::PolicyViolation { region, .. } => Some(region.clone()),
            _ => None,
        };
        Self {
            code: e.code(),
            message: e.detail(),
            region,
        }
    }
}

/// Every ack carries exactly one argument: `{"ok": T}` or `{"error": ErrorBody}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    /// Success.
    Ok(T),
    /// Failure.
    Error(ErrorBody),
}

/// `space:join`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The space.
    pub space: SpaceId,
    /// The last seq the client has seen; the region returns what came after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The history epoch `since` belongs to. A region whose epoch differs ignores `since`
    /// and answers from the start of its own history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// The answer to `space:join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReply {
    /// The space.
    pub space: SpaceId,
    /// The newest seq in the space.
    pub head_seq: u64,
    /// Messages after `since`, oldest first, at most [`MAX_PAGE`].
    #[serde(default)]
    pub missed: Vec<Message>,
    /// Whether `missed` reaches `head_seq` (false: join again with the new `since`).
    pub complete: bool,
    /// The oldest seq the region still holds (`head_seq + 1` when it holds none). Messages
    /// below it have passed the retention window and can't be delivered any more.
    #[serde(default = "one")]
    pub oldest_seq: u64,
    /// Identifies the space's history in this region. It changes only when the region lost
    /// its history (seq numbering starts over).
    #[serde(default)]
    pub epoch: String,
}

fn one() -> u64 {
    1
}

/// `space:leave`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveRequest {
    /// The space.
    pub space: SpaceId,
}

/// `message:send`
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The space.
    pub space: SpaceId,
    /// The idempotency key: the region stores one message per key and space.
    pub key: IdempotencyKey,
    /// The text; empty when it travels `sealed`.
    #[serde(default)]
    pub body: String,
    /// The text sealed to the housing region's key (data-sovereignty spaces), bound to
    /// (space, `key`, region). Exactly one of `body` and `sealed` carries the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::envelope::SealedPayload>,
    /// W3C traceparent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl std::fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRequest")
            .field("space", &self.space)
            .field("key", &self.key)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// The answer to `message:send`.
pub type SendReply = SendReceipt;

/// `message:send_batch`: up to [`MAX_BATCH`] sends to one space, each as `message:send`
/// has it (its `space` the batch's). The region checks them all before storing any, then
/// stores them in the order listed: the client sends a batch when several sends of a space
/// are waiting, so that one round trip carries them in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendBatchRequest {
    /// The space.
    pub space: SpaceId,
    /// The sends, in the order to store them.
    pub messages: Vec<SendRequest>,
}

/// The answer to `message:send_batch`: a receipt per send, in the order listed (a send
/// already stored under its key answers with its first receipt, as `message:send` does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendBatchReply {
    /// The receipts.
    pub receipts: Vec<SendReceipt>,
}

/// `history`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// The space.
    pub space: SpaceId,
    /// Only messages with a seq below this one (newest page when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// The answer to `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryReply {
    /// Messages, oldest first.
    pub messages: Vec<Message>,
}

/// `presence:set`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRequest {
    /// The new status.
    pub status: PresenceStatus,
}

/// Region to client: `presence`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// Whose presence.
    pub user: UserId,
    /// The new status.
    pub status: PresenceStatus,
    /// The space through which the client learns it.
    pub space: SpaceId,
}

/// `typing`, both directions (the region fills in `user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingEvent {
    /// The space.
    pub space: SpaceId,
    /// Who is typing (set by the region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// Started or stopped.
    pub typing: bool,
}

/// `dm:create`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmCreateRequest {
    /// The other user.
    pub peer: UserId,
}

/// The answer to `dm:create`.
pub type DmCreateReply = SpaceLocation;

/// An empty success answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

// ---------------------------------------------------------------------------------------
// Writing JSON (see `crate::json::ToJson`): what the client sends, in the shapes the serde
// attributes above give (a `skip_serializing_if` field is left out when absent).
// ---------------------------------------------------------------------------------------

impl ToJson for Auth {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("token", &self.token)
            .num("protocol", u64::from(self.protocol));
        if let Some(key) = &self.public_key {
            w.str("public_key", &key.to_base64());
        }
    }
}

impl ToJson for JoinRequest {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("space", self.space.as_str());
        if let Some(since) = self.since {
            w.num("since", since);
        }
        if let Some(epoch) = &self.epoch {
            w.str("epoch", epoch);
        }
    }
}

impl ToJson for LeaveRequest {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("space", self.space.as_str());
    }
}

impl ToJson for SendRequest {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("space", self.space.as_str())
            .str("key", self.key.as_str())
            .str("body", &self.body);
        if let Some(sealed) = &self.sealed {
            w.value("sealed", sealed);
        }
        if let Some(trace) = &self.trace {
            w.str("trace", trace);
        }
    }
}

impl ToJson for SendBatchRequest {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("space", self.space.as_str())
            .array("messages", &self.messages, |w, m| m.to_json(w));
    }
}

impl ToJson for HistoryRequest {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("space", self.space.as_str());
        if let Some(before) = self.before {
            w.num("before", before);
        }
        w.num("limit", u64::from(self.limit));
    }
}

impl ToJson for PresenceRequest {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("status", self.status.as_str());
    }
}

impl ToJson for TypingEvent {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("space", self.space.as_str());
        if let Some(user) = &self.user {
            w.str("user", user.as_str());
        }
        w.bool("typing", self.typing);
    }
}

impl ToJson for DmCreateRequest {
    fn to_json(&self, w: &mut ObjectWriter<'_>) {
        w.str("peer", self.peer.as_str());
    }
}

// ---------------------------------------------------------------------------------------
// Reading from JSON (see `crate::json`): what the client reads of the protocol, in the
// shapes the serde attributes above give.
// ---------------------------------------------------------------------------------------

struct_from_json!(Notify {
    id,
    notification,
    sealed
});

struct_from_json!(ErrorBody {
    code,
    message,
    region
});

impl<T: FromJson> FromJson for Reply<T> {
    fn from_json(value: Value) -> Read<Self> {
        let mut f = Fields::of(value)?;
        if let Some(ok) = f.opt("ok")? {
            return Ok(Self::Ok(ok));
        }
        match f.opt("error")? {
            Some(error) => Ok(Self::Error(error)),
            // `{"ok": null}` too: no T is written as null.
            None => Err("expected `ok` or `error`".into()),
        }
    }
}

struct_from_json!(JoinReply {
    space,
    head_seq,
    missed = Vec::new(),
    complete,
    oldest_seq = one(),
    epoch = String::new(),
});

struct_from_json!(SendBatchReply { receipts });

struct_from_json!(HistoryReply { messages });

struct_from_json!(PresenceEvent {
    user,
    status,
    space
});

struct_from_json!(TypingEvent {
    space,
    user,
    typing
});

impl FromJson for Empty {
    fn from_json(value: Value) -> Read<Self> {
        Fields::of(value).map(|_| Self {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;
    use serde_json::json;

    #[meridian_test]
    fn an_error_crosses_the_wire_and_reads_the_same_on_the_other_side() {
        for sent in [
            crate::Error::NotFound("space acme:nope".into()),
            crate::Error::PolicyViolation {
                region: crate::model::RegionId::new_unchecked("us-east"),
                reason: "eu-strict permits eu-west only".into(),
            },
            crate::Error::Closed,
        ] {
            let received = crate::Error::from_wire(&ErrorBody::from(&sent));
            assert_eq!(received, sent);
            assert_eq!(received.to_string(), sent.to_string());
        }
    }

    #[meridian_test]
    fn replies_are_tagged_ok_or_error() {
        let ok: Reply<Empty> = serde_json::from_value(json!({"ok": {}})).unwrap();
        assert_eq!(ok, Reply::Ok(Empty {}));
        let err: Reply<Empty> = serde_json::from_value(
            json!({"error": {"code": "policy_violation", "message": "no", "region": "us-east"}}),
        )
        .unwrap();
        let Reply::Error(body) = err else {
            panic!("expected an error")
        };
        assert_eq!(body.code, ErrorCode::PolicyViolation);
    }

    #[meridian_test]
    fn an_unknown_error_code_from_a_newer_server_is_refused_as_a_whole_reply() {
        // Unknown codes don't deserialize into ErrorCode; the session maps that to Protocol.
        let r: Result<Reply<Empty>, _> =
            serde_json::from_value(json!({"error": {"code": "brand_new", "message": "x"}}));
        assert!(r.is_err());
    }

    #[meridian_test]
    fn auth_and_send_requests_never_show_secrets_or_bodies() {
        let a = Auth {
            token: "secret-token".into(),
            protocol: 1,
            public_key: None,
        };
        assert!(!format!("{a:?}").contains("secret-token"));
        let s = SendRequest {
            space: SpaceId::new_unchecked("s"),
            key: IdempotencyKey::new_unchecked("k"),
            body: "private words".into(),
            sealed: None,
            trace: None,
        };
        assert!(!format!("{s:?}").contains("private words"));
    }
}
