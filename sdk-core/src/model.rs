//! The federation's domain model: regions, policies, flavors, spaces, users, messages.
//!
//! Owns: plain data types, validated at construction and at deserialization, so that a
//! value of these types is always well formed. Must never do IO or hold a clock.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json::{Fields, FromJson, Read, string_enum, struct_from_json};

/// The longest identifier accepted anywhere (bytes).
pub const MAX_ID_LEN: usize = 128;
/// The largest message body accepted (bytes of UTF-8).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

fn validate_id(kind: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidInput(format!("{kind} must not be empty")));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Error::InvalidInput(format!(
            "{kind} is longer than {MAX_ID_LEN} bytes"
        )));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(Error::InvalidInput(format!(
            "{kind} may only contain ASCII letters, digits, '-', '_', '.' and ':'"
        )));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate_id($kind, &value)?;
                Ok(Self(value))
            }

            /// Wraps a value known to be valid (a literal in code). Invalid input is
            /// still refused later by every boundary that deserializes it.
            pub fn new_unchecked(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromJson for $name {
            fn from_json(value: serde_json::Value) -> std::result::Result<Self, String> {
                Self::new(crate::json::string(value)?).map_err(|e| e.to_string())
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(value: &str) -> Result<Self> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A region of the federation, e.g. `eu-west`.
    RegionId, "region id");
id_type!(
    /// A space (a channel or a DM) of the federation.
    SpaceId, "space id");
id_type!(
    /// A user of the federation.
    UserId, "user id");
id_type!(
    /// A company (tenant) of the federation.
    CompanyId, "company id");
id_type!(
    /// A geographic policy, as named in the federation document.
    PolicyId, "policy id");
id_type!(
    /// A flavor (geo-constrained deployment), e.g. `eu`.
    FlavorId, "flavor id");
id_type!(
    /// A message, as assigned by the region that stored it.
    MessageId, "message id");
id_type!(
    /// The idempotency key of a send: the server stores a message once per key.
    IdempotencyKey, "idempotency key");

/// A region and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// The region's id.
    pub id: RegionId,
    /// A human name, e.g. "Europe (Ireland)".
    pub name: String,
    /// The Socket.IO endpoint, `ws://` or `wss://` (the `/socket.io/` path is added by the SDK).
    pub socket_url: String,
    /// The region's public key for sealed payloads (base64), when it publishes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// How a policy chooses the regions it permits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum PolicyMode {
    /// Only the company's home region.
    Strict,
    /// An explicit list of regions (the home region is always permitted as well).
    Whitelist {
        /// The permitted regions.
        regions: Vec<RegionId>,
    },
}

/// What a policy protects: data at rest only, or at rest and in transit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Residency {
    /// Data residency: compliance at rest.
    Dr,
    /// Data sovereignty: at rest, and payloads stay sealed in transit.
    Ds,
}

/// A geographic policy (GP) as published in the federation document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoPolicy {
    /// The policy's id.
    pub id: PolicyId,
    /// Which regions it permits.
    #[serde(flatten)]
    pub mode: PolicyMode,
    /// DR or DS.
    pub residency: Residency,
}

/// The rollout state of a flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Deployed, nobody routed to it.
    Shadow,
    /// Only users with an explicit override.
    Beta,
    /// Generally available.
    Ga,
}

/// A geo-constrained deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flavor {
    /// The flavor's id, e.g. `eu`.
    pub id: FlavorId,
    /// The regions it runs in.
    pub regions: Vec<RegionId>,
    /// Its rollout state.
    pub rollout: RolloutState,
}

/// The federation document the directory publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationDoc {
    /// Monotonic version; a client never goes back to an older one.
    pub version: u64,
    /// When the directory issued it (ms since the Unix epoch).
    pub issued_at_ms: u64,
    /// The regions.
    pub regions: Vec<Region>,
    /// The policies.
    pub policies: Vec<GeoPolicy>,
    /// The flavors.
    pub flavors: Vec<Flavor>,
    /// When the document stops being valid (ms since the Unix epoch): a client refuses an
    /// expired document and keeps the last good one.
    #[serde(default = "never")]
    pub expires_at_ms: u64,
    /// Keys that sign the next documents (key rotation): trusted once this document has
    /// been verified with a key already trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_signing_keys: Vec<FederationKey>,
}

fn never() -> u64 {
    u64::MAX
}

/// A key the federation signs its document with: ed25519, public half in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationKey {
    /// Names the key in signatures.
    pub id: String,
    /// The ed25519 public key, base64 (32 bytes).
    pub public_key: String,
}

/// The federation document as the directory serves it: the exact bytes that were signed,
/// which key signed them, and the signature (see `trust`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedFederationDoc {
    /// The [`FederationDoc`] as JSON text: verified as bytes, parsed only after.
    pub document: String,
    /// The id of the signing key.
    pub key_id: String,
    /// The ed25519 signature, base64.
    pub signature: String,
}

/// An id that appears more than once, if any (sorted, so O(n log n) for any document).
fn duplicate(mut ids: Vec<&str>) -> Option<&str> {
    ids.sort_unstable();
    ids.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

impl FederationDoc {
    /// Checks that the document is internally consistent: unique ids, and every region
    /// named by a policy or a flavor exists. A directory that publishes anything else is
    /// treated as unavailable rather than trusted.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::DirectoryUnavailable(why));
        if self.regions.is_empty() {
            return bad("federation document lists no regions".into());
        }
        if let Some(id) = duplicate(self.regions.iter().map(|r| r.id.as_str()).collect()) {
            return bad(format!("region {id} listed twice"));
        }
        for r in &self.regions {
            if !(r.socket_url.starts_with("ws://") || r.socket_url.starts_with("wss://")) {
                return bad(format!(
                    "region {} has a socket url that is not ws(s)://",
                    r.id
                ));
            }
        }
        let known = |id: &RegionId| self.regions.iter().any(|r| &r.id == id);
        if let Some(id) = duplicate(self.policies.iter().map(|p| p.id.as_str()).collect()) {
            return bad(format!("policy {id} listed twice"));
        }
        for p in &self.policies {
            if let PolicyMode::Whitelist { regions } = &p.mode
                && let Some(r) = regions.iter().find(|r| !known(r))
            {
                return bad(format!("policy {} names unknown region {r}", p.id));
            }
        }
        for f in &self.flavors {
            if let Some(r) = f.regions.iter().find(|r| !known(r)) {
                return bad(format!("flavor {} names unknown region {r}", f.id));
            }
        }
        Ok(())
    }

    /// The region with this id.
    pub fn region(&self, id: &RegionId) -> Option<&Region> {
        self.regions.iter().find(|r| &r.id == id)
    }

    /// The policy with this id.
    pub fn policy(&self, id: &PolicyId) -> Option<&GeoPolicy> {
        self.policies.iter().find(|p| &p.id == id)
    }
}

/// What the directory tells a client about the user its token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The user.
    pub user: UserId,
    /// The user's display name.
    pub display_name: String,
    /// The user's company.
    pub company: CompanyId,
    /// The company's home region.
    pub home_region: RegionId,
    /// The company's geographic policy.
    pub policy: PolicyId,
    /// The flavor the user is routed to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<FlavorId>,
}

/// What the policy functions need to know about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserContext {
    /// The user.
    pub user: UserId,
    /// The user's company's home region.
    pub home_region: RegionId,
    /// The user's geographic policy.
    pub policy: GeoPolicy,
}

/// Whether a space is a channel or a direct conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpaceKind {
    /// A company channel.
    Channel,
    /// A direct conversation between two users.
    Dm,
}

/// Where a space is housed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceLocation {
    /// The space.
    pub space: SpaceId,
    /// The region that houses it (its owning company's home region).
    pub region: RegionId,
    /// The company that owns it.
    pub company: CompanyId,
    /// Channel or DM.
    pub kind: SpaceKind,
    /// The residency its owner's policy demands.
    pub residency: Residency,
}

/// Where a user is homed, and the policy that governs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLocation {
    /// The user.
    pub user: UserId,
    /// Their company's home region.
    pub home_region: RegionId,
    /// Their policy.
    pub policy: PolicyId,
}

/// A message as stored by a region and delivered to members.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The space it belongs to.
    pub space: SpaceId,
    /// Its position in the space, 1-based, gap-free per space.
    pub seq: u64,
    /// Its id.
    pub id: MessageId,
    /// Who sent it.
    pub sender: UserId,
    /// The text. On the wire, empty when the message travels `sealed`; the SDK opens it
    /// and hands the app the text.
    pub body: String,
    /// The text sealed to the receiving client's key (data-sovereignty spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::envelope::SealedPayload>,
    /// When the region stored it (ms since the Unix epoch).
    pub sent_at_ms: u64,
    /// W3C traceparent of the send, carried end to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

// Bodies never reach logs: Debug shows the size only.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("space", &self.space)
            .field("seq", &self.seq)
            .field("id", &self.id)
            .field("sender", &self.sender)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("sent_at_ms", &self.sent_at_ms)
            .finish()
    }
}

/// What the region answers when it has stored a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReceipt {
    /// The stored message's id.
    pub message_id: MessageId,
    /// Its seq in the space.
    pub seq: u64,
    /// When it was stored (ms since the Unix epoch).
    pub sent_at_ms: u64,
}

/// Something the user's home region tells them, wherever it happened in the federation
/// (carried between regions by the relay, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// A message mentioned the user (`@user` in its text).
    Mention {
        /// The space.
        space: SpaceId,
        /// The message.
        message_id: MessageId,
        /// Its seq.
        seq: u64,
        /// Who wrote it.
        from: UserId,
    },
    /// Someone opened a DM with the user.
    DmInvite {
        /// The DM.
        space: SpaceId,
        /// Who opened it.
        from: UserId,
    },
    /// A contact (someone the user shares a DM with) changed presence.
    ContactPresence {
        /// The contact.
        user: UserId,
        /// Their new presence.
        status: PresenceStatus,
    },
}

/// A user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Active.
    Online,
    /// Connected but idle.
    Away,
    /// Gone.
    Offline,
}

/// Validates a message body from the app: not empty, not too large.
pub fn validate_body(body: &str) -> Result<()> {
    if body.trim().is_empty() {
        return Err(Error::InvalidInput("message body is empty".into()));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::InvalidInput(format!(
            "message body is {} bytes, the limit is {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading from JSON (see `crate::json`): the same shapes the serde attributes above give.
// ---------------------------------------------------------------------------------------

struct_from_json!(Region {
    id,
    name,
    socket_url,
    public_key
});

string_enum!(Residency { Dr => "dr", Ds => "ds" });
string_enum!(RolloutState {
    Shadow => "shadow",
    Beta => "beta",
    Ga => "ga",
});
string_enum!(SpaceKind { Channel => "channel", Dm => "dm" });
string_enum!(PresenceStatus {
    Online => "online",
    Away => "away",
    Offline => "offline",
});

impl FromJson for GeoPolicy {
    fn from_json(value: serde_json::Value) -> Read<Self> {
        let mut f = Fields::of(value)?;
        let mode: String = f.field("mode")?;
        let mode = match mode.as_str() {
            "strict" => PolicyMode::Strict,
            "whitelist" => PolicyMode::Whitelist {
                regions: f.field("regions")?,
            },
            other => {
                return Err(crate::json::unknown_variant(
                    other,
                    &["strict", "whitelist"],
                ));
            }
        };
        Ok(Self {
            id: f.field("id")?,
            mode,
            residency: f.field("residency")?,
        })
    }
}

struct_from_json!(Flavor {
    id,
    regions,
    rollout
});

struct_from_json!(FederationDoc {
    version,
    issued_at_ms,
    regions,
    policies,
    flavors,
    expires_at_ms = never(),
    next_signing_keys = Vec::new(),
});

struct_from_json!(FederationKey { id, public_key });

struct_from_json!(SignedFederationDoc {
    document,
    key_id,
    signature
});

struct_from_json!(SessionInfo {
    user,
    display_name,
    company,
    home_region,
    policy,
    flavor
});

struct_from_json!(SpaceLocation {
    space,
    region,
    company,
    kind,
    residency
});

struct_from_json!(UserLocation {
    user,
    home_region,
    policy
});

struct_from_json!(Message {
    space,
    seq,
    id,
    sender,
    body,
    sealed,
    sent_at_ms,
    trace
});

struct_from_json!(SendReceipt {
    message_id,
    seq,
    sent_at_ms
});

impl FromJson for Notification {
    fn from_json(value: serde_json::Value) -> Read<Self> {
        let mut f = Fields::of(value)?;
        let kind: String = f.field("kind")?;
        Ok(match kind.as_str() {
            "mention" => Self::Mention {
                space: f.field("space")?,
                message_id: f.field("message_id")?,
                seq: f.field("seq")?,
                from: f.field("from")?,
            },
            "dm_invite" => Self::DmInvite {
                space: f.field("space")?,
                from: f.field("from")?,
            },
            "contact_presence" => Self::ContactPresence {
                user: f.field("user")?,
                status: f.field("status")?,
            },
            other => {
                return Err(crate::json::unknown_variant(
                    other,
                    &["mention", "dm_invite", "contact_presence"],
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;

    #[meridian_test]
    fn ids_refuse_empty_long_and_odd_characters() {
        assert_eq!(
            SpaceId::new("").unwrap_err().code(),
            crate::ErrorCode::InvalidInput
        );
        assert!(SpaceId::new("a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(SpaceId::new("eu/../x").is_err());
        assert!(SpaceId::new("space with spaces").is_err());
        assert_eq!(
            SpaceId::new("acme:general-1").unwrap().as_str(),
            "acme:general-1"
        );
    }

    #[meridian_test]
    fn ids_are_validated_when_deserialized_from_the_network() {
        let bad: std::result::Result<SpaceId, _> = serde_json::from_str("\"\"");
        assert!(bad.is_err());
        let good: SpaceId = serde_json::from_str("\"s1\"").unwrap();
        assert_eq!(good.as_str(), "s1");
    }

    #[meridian_test]
    fn bodies_must_be_non_empty_and_within_the_limit() {
        assert!(validate_body("hello").is_ok());
        assert!(validate_body("   ").is_err());
        assert!(validate_body(&"x".repeat(MAX_BODY_BYTES + 1)).is_err());
        assert!(validate_body(&"x".repeat(MAX_BODY_BYTES)).is_ok());
    }

    #[meridian_test]
    fn a_message_debug_never_shows_its_body() {
        let m = Message {
            space: SpaceId::new_unchecked("s"),
            seq: 1,
            id: MessageId::new_unchecked("m"),
            sender: UserId::new_unchecked("u"),
            body: "top secret".into(),
            sealed: None,
            sent_at_ms: 0,
            trace: None,
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("top secret"), "{shown}");
        assert!(shown.contains("<10 bytes>"));
    }

    #[meridian_test]
    fn a_document_naming_an_unknown_region_is_refused() {
        let doc = FederationDoc {
            version: 1,
            issued_at_ms: 0,
            regions: vec![Region {
                id: RegionId::new_unchecked("eu-west"),
                name: "EU".into(),
                socket_url: "ws://127.0.0.1:1".into(),
                public_key: None,
            }],
            policies: vec![GeoPolicy {
                id: PolicyId::new_unchecked("p"),
                mode: PolicyMode::Whitelist {
                    regions: vec![RegionId::new_unchecked("mars")],
                },
                residency: Residency::Dr,
            }],
            flavors: vec![],
            expires_at_ms: u64::MAX,
            next_signing_keys: vec![],
        };
        let err = doc.validate().unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::DirectoryUnavailable);
        assert!(err.to_string().contains("mars"));
    }

    #[meridian_test]
    fn a_document_listing_a_region_or_a_policy_twice_is_refused() {
        let region = |id: &str| Region {
            id: RegionId::new_unchecked(id),
            name: id.into(),
            socket_url: "ws://127.0.0.1:1".into(),
            public_key: None,
        };
        let policy = |id: &str| GeoPolicy {
            id: PolicyId::new_unchecked(id),
            mode: PolicyMode::Whitelist { regions: vec![] },
            residency: Residency::Dr,
        };
        let doc = |regions: &[&str], policies: &[&str]| FederationDoc {
            version: 1,
            issued_at_ms: 0,
            regions: regions.iter().map(|r| region(r)).collect(),
            policies: policies.iter().map(|p| policy(p)).collect(),
            flavors: vec![],
            expires_at_ms: u64::MAX,
            next_signing_keys: vec![],
        };
        assert!(doc(&["b", "a", "c"], &["q", "p"]).validate().is_ok());
        let err = doc(&["b", "a", "c", "a"], &["p"]).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "directory unavailable: region a listed twice"
        );
        let err = doc(&["a"], &["p", "q", "p"]).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "directory unavailable: policy p listed twice"
        );
    }
}
