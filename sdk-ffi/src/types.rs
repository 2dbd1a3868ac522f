//! The records, enums and errors that cross the FFI, and their conversions from the core.
//!
//! Owns: the foreign shape of the core's types (what Kotlin, Swift and TypeScript see).
//! Must never carry logic: every field comes from the core as is.

use meridian::model::{self, Notification as CoreNotification};
use meridian::outbox::{OutboxEntry as CoreOutboxEntry, SendStatus};
use meridian::{ConnectionState as CoreState, Error, Event as CoreEvent};

/// Every failure, one variant per stable code (the same codes as the Rust core and the npm
/// package: `policy_violation`, `not_found`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum MeridianError {
    /// The user's geographic policy forbids `region`; nothing left the device.
    #[error("{detail}")]
    PolicyViolation {
        /// The forbidden region.
        region: String,
        /// Why, for a developer.
        detail: String,
    },
    /// The space, user or message does not exist.
    #[error("{detail}")]
    NotFound {
        /// What was missing.
        detail: String,
    },
    /// The token was rejected, or the user may not do this.
    #[error("{detail}")]
    Unauthorized {
        /// Why.
        detail: String,
    },
    /// The app passed something the SDK or the server will not accept.
    #[error("{detail}")]
    InvalidInput {
        /// What.
        detail: String,
    },
    /// The directory could not be reached or answered something unusable.
    #[error("{detail}")]
    DirectoryUnavailable {
        /// Why.
        detail: String,
    },
    /// The client is closed.
    #[error("{detail}")]
    Closed {
        /// Why.
        detail: String,
    },
    /// No answer in time.
    #[error("{detail}")]
    Timeout {
        /// What.
        detail: String,
    },
    /// A peer broke the wire protocol.
    #[error("{detail}")]
    Protocol {
        /// What.
        detail: String,
    },
    /// The space moved to another region.
    #[error("{detail}")]
    Moved {
        /// What.
        detail: String,
    },
    /// The transport failed.
    #[error("{detail}")]
    Transport {
        /// Why.
        detail: String,
    },
    /// A sealed payload or signed document failed its check.
    #[error("{detail}")]
    Integrity {
        /// What.
        detail: String,
    },
    /// Anything else, including a store or token source of the app's that failed.
    #[error("{detail}")]
    Internal {
        /// What.
        detail: String,
    },
}

impl From<Error> for MeridianError {
    fn from(error: Error) -> Self {
        // Named `detail`, not `message`: Kotlin exceptions already have a `message`.
        let detail = error.to_string();
        match error {
            Error::PolicyViolation { region, .. } => Self::PolicyViolation {
                region: region.to_string(),
                detail,
            },
            Error::NotFound(_) => Self::NotFound { detail },
            Error::Unauthorized(_) => Self::Unauthorized { detail },
            Error::InvalidInput(_) => Self::InvalidInput { detail },
            Error::DirectoryUnavailable(_) => Self::DirectoryUnavailable { detail },
            Error::Closed => Self::Closed { detail },
            Error::Timeout(_) => Self::Timeout { detail },
            Error::Protocol(_) => Self::Protocol { detail },
            Error::Moved(_) => Self::Moved { detail },
            Error::Transport(_) => Self::Transport { detail },
            Error::Integrity(_) => Self::Integrity { detail },
            Error::Internal(_) => Self::Internal { detail },
        }
    }
}

/// What an app's store or token source reports when it fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum ForeignError {
    /// It failed; `detail` says why.
    #[error("{detail}")]
    Failed {
        /// Why.
        detail: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ForeignError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            detail: error.reason,
        }
    }
}

/// An error inside an event or an outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ErrorInfo {
    /// The stable code.
    pub code: String,
    /// Why.
    pub message: String,
    /// The forbidden region, for `policy_violation`.
    pub region: Option<String>,
}

impl From<&Error> for ErrorInfo {
    fn from(error: &Error) -> Self {
        let region = match error {
            Error::PolicyViolation { region, .. } => Some(region.to_string()),
            _ => None,
        };
        Self {
            code: error.code().as_str().to_owned(),
            message: error.to_string(),
            region,
        }
    }
}

/// A federation signing key the app trusts (ed25519, base64).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FederationKey {
    /// Names the key in signatures.
    pub id: String,
    /// The public key, base64 of 32 bytes.
    pub public_key: String,
}

/// A bearer token and, if known, when it expires (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Token {
    /// The token.
    pub value: String,
    /// Its expiry.
    pub expires_at_ms: Option<u64>,
}

/// How to reach the federation, and who is asking.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ClientOptions {
    /// The directory's base URL.
    pub directory_url: String,
    /// The user's token (may be empty when a token source is given).
    pub token: String,
    /// The federation signing keys the app trusts.
    pub federation_keys: Vec<FederationKey>,
    /// A folder of the app's where the SDK keeps pending sends, cursors and the device key
    /// (one file per record). Ignored when the app passes a store of its own; with neither,
    /// they are kept in memory.
    pub store_dir: Option<String>,
}

/// Who the client is.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Session {
    /// The user.
    pub user: String,
    /// Their display name.
    pub display_name: String,
    /// Their company.
    pub company: String,
    /// Their home region.
    pub home_region: String,
    /// Their geographic policy.
    pub policy: String,
    /// Their flavor, if any.
    pub flavor: Option<String>,
}

impl From<&model::SessionInfo> for Session {
    fn from(s: &model::SessionInfo) -> Self {
        Self {
            user: s.user.to_string(),
            display_name: s.display_name.clone(),
            company: s.company.to_string(),
            home_region: s.home_region.to_string(),
            policy: s.policy.to_string(),
            flavor: s.flavor.as_ref().map(ToString::to_string),
        }
    }
}

/// A message of a space: each arrives once, in `seq` order.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Message {
    /// The space.
    pub space: String,
    /// Its position in the space (1, 2, 3, ... with no gaps).
    pub seq: u64,
    /// Its id.
    pub id: String,
    /// Who sent it.
    pub sender: String,
    /// The text (opened on the device when it travelled sealed).
    pub body: String,
    /// When the region stored it (ms since the Unix epoch).
    pub sent_at_ms: u64,
}

// Bodies never reach logs.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("space", &self.space)
            .field("seq", &self.seq)
            .field("sender", &self.sender)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish_non_exhaustive()
    }
}

impl From<&model::Message> for Message {
    fn from(m: &model::Message) -> Self {
        Self {
            space: m.space.to_string(),
            seq: m.seq,
            id: m.id.to_string(),
            sender: m.sender.to_string(),
            body: m.body.clone(),
            sent_at_ms: m.sent_at_ms,
        }
    }
}

/// What the region answered when it stored a message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SendReceipt {
    /// The message's id.
    pub message_id: String,
    /// Its seq.
    pub seq: u64,
    /// When it was stored.
    pub sent_at_ms: u64,
}

impl From<&model::SendReceipt> for SendReceipt {
    fn from(r: &model::SendReceipt) -> Self {
        Self {
            message_id: r.message_id.to_string(),
            seq: r.seq,
            sent_at_ms: r.sent_at_ms,
        }
    }
}

/// A space the user joined.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct JoinedSpace {
    /// The space.
    pub space: String,
    /// The newest seq when joined.
    pub head_seq: u64,
}

/// Whether a space is a channel or a DM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SpaceKind {
    /// A company channel.
    Channel,
    /// A direct conversation.
    Dm,
}

/// What a space's policy protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Residency {
    /// Data residency: at rest.
    Dr,
    /// Data sovereignty: at rest, and sealed in transit.
    Ds,
}

/// Where a space is housed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SpaceLocation {
    /// The space.
    pub space: String,
    /// Its region.
    pub region: String,
    /// Its company.
    pub company: String,
    /// Channel or DM.
    pub kind: SpaceKind,
    /// DR or DS.
    pub residency: Residency,
}

impl From<&model::SpaceLocation> for SpaceLocation {
    fn from(l: &model::SpaceLocation) -> Self {
        Self {
            space: l.space.to_string(),
            region: l.region.to_string(),
            company: l.company.to_string(),
            kind: match l.kind {
                model::SpaceKind::Channel => SpaceKind::Channel,
                model::SpaceKind::Dm => SpaceKind::Dm,
            },
            residency: match l.residency {
                model::Residency::Dr => Residency::Dr,
                model::Residency::Ds => Residency::Ds,
            },
        }
    }
}

/// A user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PresenceStatus {
    /// Active.
    Online,
    /// Connected but idle.
    Away,
    /// Gone.
    Offline,
}

impl From<model::PresenceStatus> for PresenceStatus {
    fn from(s: model::PresenceStatus) -> Self {
        match s {
            model::PresenceStatus::Online => Self::Online,
            model::PresenceStatus::Away => Self::Away,
            model::PresenceStatus::Offline => Self::Offline,
        }
    }
}

impl From<PresenceStatus> for model::PresenceStatus {
    fn from(s: PresenceStatus) -> Self {
        match s {
            PresenceStatus::Online => Self::Online,
            PresenceStatus::Away => Self::Away,
            PresenceStatus::Offline => Self::Offline,
        }
    }
}

/// The state of one region's connection, or of the client as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    /// Nothing to do.
    Idle,
    /// Connecting.
    Connecting,
    /// Connected and authenticated.
    Connected,
    /// The platform said the network is gone.
    Offline,
    /// Lost; retrying after a backoff.
    Reconnecting {
        /// Consecutive failed attempts.
        attempt: u32,
        /// Delay before the next one (ms).
        retry_in_ms: u64,
    },
    /// Closed for good.
    Closed,
}

impl From<CoreState> for ConnectionState {
    fn from(s: CoreState) -> Self {
        match s {
            CoreState::Idle => Self::Idle,
            CoreState::Connecting => Self::Connecting,
            CoreState::Connected => Self::Connected,
            CoreState::Offline => Self::Offline,
            CoreState::Reconnecting { attempt, retry_in } => Self::Reconnecting {
                attempt,
                retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
            },
            CoreState::Closed => Self::Closed,
        }
    }
}

/// A send not yet stored by its region.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct OutboxEntry {
    /// Its idempotency key.
    pub key: String,
    /// The space.
    pub space: String,
    /// The text.
    pub body: String,
    /// Why it failed for good; `None` while it is queued.
    pub failure: Option<ErrorInfo>,
}

// Bodies never reach logs.
impl std::fmt::Debug for OutboxEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxEntry")
            .field("key", &self.key)
            .field("space", &self.space)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl From<&CoreOutboxEntry> for OutboxEntry {
    fn from(e: &CoreOutboxEntry) -> Self {
        Self {
            key: e.key.to_string(),
            space: e.space.to_string(),
            body: e.body.clone(),
            failure: match &e.status {
                SendStatus::Queued => None,
                SendStatus::Failed { code, message } => Some(ErrorInfo {
                    code: code.as_str().to_owned(),
                    message: message.clone(),
                    region: None,
                }),
            },
        }
    }
}

/// Something the user's home region tells them.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Notification {
    /// A message mentioned the user.
    Mention {
        /// The space.
        space: String,
        /// The message.
        message_id: String,
        /// Its seq.
        seq: u64,
        /// Who wrote it.
        from: String,
    },
    /// Someone opened a DM with the user.
    DmInvite {
        /// The DM.
        space: String,
        /// Who.
        from: String,
    },
    /// A contact changed presence.
    ContactPresence {
        /// The contact.
        user: String,
        /// Their presence.
        status: PresenceStatus,
    },
}

impl From<&CoreNotification> for Notification {
    fn from(n: &CoreNotification) -> Self {
        match n {
            CoreNotification::Mention {
                space,
                message_id,
                seq,
                from,
            } => Self::Mention {
                space: space.to_string(),
                message_id: message_id.to_string(),
                seq: *seq,
                from: from.to_string(),
            },
            CoreNotification::DmInvite { space, from } => Self::DmInvite {
                space: space.to_string(),
                from: from.to_string(),
            },
            CoreNotification::ContactPresence { user, status } => Self::ContactPresence {
                user: user.to_string(),
                status: (*status).into(),
            },
        }
    }
}

/// Everything the app hears from the client.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Event {
    /// A message of a joined space: each once, in seq order.
    MessageReceived {
        /// The message.
        message: Message,
    },
    /// A member's presence changed.
    PresenceChanged {
        /// Who.
        user: String,
        /// Their presence.
        status: PresenceStatus,
        /// The space through which the client learned it.
        space: String,
    },
    /// A member started or stopped typing.
    Typing {
        /// The space.
        space: String,
        /// Who.
        user: Option<String>,
        /// Started or stopped.
        typing: bool,
    },
    /// The client as a whole: what a status bar shows.
    ConnectionChanged {
        /// The new state.
        state: ConnectionState,
    },
    /// One region's connection.
    RegionConnectionChanged {
        /// The region.
        region: String,
        /// Its new state.
        state: ConnectionState,
    },
    /// The policy stopped something before it left the device.
    PolicyBlocked {
        /// The region it would have gone to.
        region: String,
        /// The space, if any.
        space: Option<String>,
        /// Why.
        reason: String,
    },
    /// A joined space could not be restored after a reconnect.
    SubscriptionLost {
        /// The space.
        space: String,
        /// Why.
        error: ErrorInfo,
    },
    /// Messages `from`..`to` can't be delivered: call `resync` and rebuild the view.
    ContinuityLost {
        /// The space.
        space: String,
        /// The first seq missing.
        from: u64,
        /// The last one; `None` when the region's history was reset.
        to: Option<u64>,
    },
    /// A send was stored by its region.
    MessageSent {
        /// Its key.
        key: String,
        /// The space.
        space: String,
        /// The receipt.
        receipt: SendReceipt,
    },
    /// A send was refused for good.
    SendFailed {
        /// Its key.
        key: String,
        /// The space.
        space: String,
        /// Why.
        error: ErrorInfo,
    },
    /// The directory served a federation document the client refused.
    FederationDocumentRefused {
        /// Why.
        error: ErrorInfo,
    },
    /// A mention, a DM invite or a contact's presence.
    Notification {
        /// What.
        notification: Notification,
    },
    /// A region broke the protocol or reported an error outside any request.
    RegionProblem {
        /// The region.
        region: String,
        /// What.
        error: ErrorInfo,
    },
}

impl From<&CoreEvent> for Event {
    fn from(e: &CoreEvent) -> Self {
        match e {
            CoreEvent::MessageReceived(m) => Self::MessageReceived { message: m.into() },
            CoreEvent::PresenceChanged(p) => Self::PresenceChanged {
                user: p.user.to_string(),
                status: p.status.into(),
                space: p.space.to_string(),
            },
            CoreEvent::Typing(t) => Self::Typing {
                space: t.space.to_string(),
                user: t.user.as_ref().map(ToString::to_string),
                typing: t.typing,
            },
            CoreEvent::OverallConnectionChanged(state) => Self::ConnectionChanged {
                state: (*state).into(),
            },
            CoreEvent::ConnectionChanged { region, state } => Self::RegionConnectionChanged {
                region: region.to_string(),
                state: (*state).into(),
            },
            CoreEvent::PolicyBlocked {
                region,
                space,
                reason,
            } => Self::PolicyBlocked {
                region: region.to_string(),
                space: space.as_ref().map(ToString::to_string),
                reason: reason.clone(),
            },
            CoreEvent::SubscriptionLost { space, error } => Self::SubscriptionLost {
                space: space.to_string(),
                error: error.into(),
            },
            CoreEvent::ContinuityLost { space, from, to } => Self::ContinuityLost {
                space: space.to_string(),
                from: *from,
                to: *to,
            },
            CoreEvent::MessageSent {
                key,
                space,
                receipt,
            } => Self::MessageSent {
                key: key.to_string(),
                space: space.to_string(),
                receipt: receipt.into(),
            },
            CoreEvent::SendFailed { key, space, error } => Self::SendFailed {
                key: key.to_string(),
                space: space.to_string(),
                error: error.into(),
            },
            CoreEvent::FederationDocumentRefused { error } => Self::FederationDocumentRefused {
                error: error.into(),
            },
            CoreEvent::Notification(n) => Self::Notification {
                notification: n.into(),
            },
            CoreEvent::RegionProblem { region, error } => Self::RegionProblem {
                region: region.to_string(),
                error: error.into(),
            },
        }
    }
}

/// One log record of the SDK (see `set_log_handler`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LogEntry {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The module that logged it, e.g. `meridian::session`.
    pub target: String,
    /// What happened, e.g. `connected`.
    pub message: String,
    /// Its fields in order, e.g. `region`, `trace` (a send's W3C trace id), `code`.
    pub fields: Vec<LogField>,
}

/// A field of a log record.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LogField {
    /// E.g. `region`.
    pub name: String,
    /// E.g. `eu-west`.
    pub value: String,
}

impl From<meridian::log::LogRecord> for LogEntry {
    fn from(record: meridian::log::LogRecord) -> Self {
        Self {
            level: record.level.as_str().to_owned(),
            target: record.target,
            message: record.message,
            fields: record
                .fields
                .into_iter()
                .map(|(name, value)| LogField { name, value })
                .collect(),
        }
    }
}
