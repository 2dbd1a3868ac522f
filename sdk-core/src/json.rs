//! JSON for the whole client, in one place.
//!
//! Owns: how the client reads JSON: from the network (Engine.IO handshakes, Socket.IO
//! payloads, replies and events), from the directory, and from its own store. Text is parsed
//! into a `serde_json::Value`, and every type is read from that by its [`FromJson`] impl,
//! written next to the type. And how it writes JSON (requests, store records, the web
//! facade's answers): straight into text through [`ObjectWriter`], by each type's
//! [`ToJson`] impl.
//!
//! Why not serde's derived `Deserialize` here: on the web, code size is what the user pays
//! for (see the size budget in `bindings/ts/README.md`). Derived deserializers are generic
//! visitors (a field identifier visitor, a map and a sequence visitor per type, and error
//! paths that format through `serde::de::Unexpected`, which brings float formatting). They
//! came to a fifth of the bundle. A [`FromJson`] impl is a few calls to [`Fields`], which is
//! compiled once; `struct_from_json!` writes it for a struct from its field
//! names. The types keep their serde derives: the devserver and the tests read and write
//! them with serde, and `tests` in this module check that what serde writes is what
//! [`FromJson`] reads, for every type the client decodes.
//!
//! Must never be bypassed by a direct `serde_json::from_*` into a typed value in the
//! client outside tests.

use serde_json::{Map, Value};

/// What reading JSON gives: the value, or what was wrong with it.
pub type Read<T> = Result<T, String>;

/// A type the client reads from JSON. The error says what was wrong, naming the field.
pub trait FromJson: Sized {
    /// Reads `value`, taking what it needs out of it.
    fn from_json(value: Value) -> Result<Self, String>;

    /// What a field of this type reads as when it is absent (or `null`): nothing, so that
    /// it is refused as missing, except for an `Option`.
    fn absent() -> Option<Self> {
        None
    }
}

/// Decodes JSON text.
pub fn from_slice<T: FromJson>(bytes: &[u8]) -> Result<T, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    T::from_json(value)
}

/// Decodes JSON text held in a `str`.
pub fn from_str<T: FromJson>(text: &str) -> Result<T, String> {
    from_slice(text.as_bytes())
}

/// Decodes an already parsed JSON value.
pub fn from_value<T: FromJson>(value: Value) -> Result<T, String> {
    T::from_json(value)
}

/// Appends `value` as compact JSON text.
pub fn write(out: &mut Vec<u8>, value: &Value) {
    // Writing a `Value` to memory cannot fail (its map keys are strings).
    let _ = serde_json::to_writer(out, value);
}

/// A JSON object written straight into text, field by field, with no `Value` built on the
/// way: for what the client hands out (the web facade's answers and events). Strings and
/// numbers are written by serde_json, so its escaping applies.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl ObjectWriter<'_> {
    /// Writes `"key":` and gives back the buffer for its value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        // Writing to memory cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, key);
        self.out.push(b':');
        self.out
    }

    /// A string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let _ = serde_json::to_writer(self.key(key), value);
        self
    }

    /// A string field, `null` when absent.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    /// A number field.
    pub fn num(&mut self, key: &str, value: u64) -> &mut Self {
        let _ = serde_json::to_writer(self.key(key), &value);
        self
    }

    /// A number field, `null` when absent.
    pub fn opt_num(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
        self
    }

    /// A `null` field.
    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key).extend_from_slice(b"null");
        self
    }

    /// An object field, written by `fill`.
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut ObjectWriter<'_>)) -> &mut Self {
        write_object(self.key(key), fill);
        self
    }

    /// An object field written by its [`ToJson`].
    pub fn value(&mut self, key: &str, value: &dyn ToJson) -> &mut Self {
        self.object(key, |w| value.to_json(w))
    }

    /// A field holding an array of strings.
    pub fn strings(&mut self, key: &str, items: &[String]) -> &mut Self {
        write_list(self.key(key), items, |out, item| {
            let _ = serde_json::to_writer(out, item.as_str());
        });
        self
    }

    /// A field holding an array of objects, each written by `fill`.
    pub fn array<T>(
        &mut self,
        key: &str,
        items: &[T],
        fill: impl Fn(&mut ObjectWriter<'_>, &T),
    ) -> &mut Self {
        write_array(self.key(key), items, fill);
        self
    }
}

/// A type the client writes as JSON (what it sends to regions), straight into text: the
/// counterpart of [`FromJson`]. Each implementation mirrors the type's serde attributes,
/// which the devserver reads with; the tests below hold the two together.
pub trait ToJson {
    /// Writes the fields of the object this value is.
    fn to_json(&self, w: &mut ObjectWriter<'_>);
}

/// The JSON text of `value`.
pub fn to_text(value: &dyn ToJson) -> String {
    object_text(|w| value.to_json(w))
}

fn write_object(out: &mut Vec<u8>, fill: impl FnOnce(&mut ObjectWriter<'_>)) {
    out.push(b'{');
    fill(&mut ObjectWriter { out, first: true });
    out.push(b'}');
}

fn write_array<T>(out: &mut Vec<u8>, items: &[T], fill: impl Fn(&mut ObjectWriter<'_>, &T)) {
    write_list(out, items, |out, item| write_object(out, |w| fill(w, item)));
}

/// Appends `items` as a JSON array, each item written by `write_one`.
pub(crate) fn write_list<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write_one: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_one(out, item);
    }
    out.push(b']');
}

/// The JSON text of an object written by `fill`.
pub fn object_text(fill: impl FnOnce(&mut ObjectWriter<'_>)) -> String {
    let mut out = Vec::new();
    write_object(&mut out, fill);
    String::from_utf8(out).unwrap_or_default()
}

/// The JSON text of an array of objects, each written by `fill`.
pub fn array_text<T>(items: &[T], fill: impl Fn(&mut ObjectWriter<'_>, &T)) -> String {
    let mut out = Vec::new();
    write_array(&mut out, items, fill);
    String::from_utf8(out).unwrap_or_default()
}

/// The fields of a JSON object, taken out one by one. Fields not asked for are ignored, as
/// a newer peer may add some.
pub struct Fields(Map<String, Value>);

impl Fields {
    /// The object `value` is, or an error.
    pub fn of(value: Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(expected("an object", &other)),
        }
    }

    /// A field: it must be there (and not `null`) unless its type is an `Option`.
    pub fn field<T: FromJson>(&mut self, name: &str) -> Result<T, String> {
        match self.take(name) {
            Some(value) => T::from_json(value).map_err(|e| in_field(name, e)),
            None => T::absent().ok_or_else(|| missing(name)),
        }
    }

    /// A field that may be absent or `null`, whatever its type.
    pub fn opt<T: FromJson>(&mut self, name: &str) -> Result<Option<T>, String> {
        self.field::<Option<T>>(name)
    }

    /// A field that reads as its type's default when absent or `null`.
    pub fn or_default<T: FromJson + Default>(&mut self, name: &str) -> Result<T, String> {
        Ok(self.opt(name)?.unwrap_or_default())
    }

    /// Fails if the object has a field that was not asked for (other than a `null` one,
    /// which reads as absent): for input that must be exactly right (the app's own options).
    pub fn deny_unknown(self) -> Result<(), String> {
        // Every field asked for was left as `null`.
        match self.0.iter().find(|(_, v)| !v.is_null()) {
            None => Ok(()),
            Some((name, _)) => Err(format!("unknown field `{name}`")),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        // Moved out, not removed: leaving `null` behind spares the map's removal code.
        self.0
            .get_mut(name)
            .map(Value::take)
            .filter(|v| !v.is_null())
    }
}

/// The text of `value` if it is a string.
pub fn string(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(expected("a string", &other)),
    }
}

/// The error for a string that names none of `names` (an enum's variants).
pub fn unknown_variant(found: &str, names: &[&str]) -> String {
    format!(
        "unknown variant `{found}`, expected one of {}",
        names.join(", ")
    )
}

/// For a field-less enum written as a string: `as_str` (its wire name), `from_wire_name`,
/// and [`FromJson`], from one list of names.
macro_rules! string_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// The variant a wire name names, if any.
            pub fn from_wire_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl $crate::json::FromJson for $ty {
            fn from_json(value: serde_json::Value) -> Result<Self, String> {
                let name = $crate::json::string(value)?;
                Self::from_wire_name(&name)
                    .ok_or_else(|| $crate::json::unknown_variant(&name, &[$($name),+]))
            }
        }
    };
}
pub(crate) use string_enum;

/// [`FromJson`] for a struct written as an object with a field for each of the struct's
/// fields, as its serde attributes have it: named like the field unless `as "name"` says
/// otherwise (`rename`), required unless it is an `Option` or `= default` gives what an
/// absent one reads as (`default`). Enums with tags write theirs out.
macro_rules! struct_from_json {
    ($ty:ident { $($field:ident $(as $name:literal)? $(= $default:expr)?),+ $(,)? }) => {
        impl $crate::json::FromJson for $ty {
            fn from_json(value: serde_json::Value) -> Result<Self, String> {
                let mut f = $crate::json::Fields::of(value)?;
                Ok(Self {
                    $($field: $crate::json::struct_from_json!(
                        @read f, $field $(as $name)? $(= $default)?
                    ),)+
                })
            }
        }
    };
    (@read $f:ident, $field:ident) => { $f.field(stringify!($field))? };
    (@read $f:ident, $field:ident as $name:literal) => { $f.field($name)? };
    (@read $f:ident, $field:ident = $default:expr) => {
        $f.opt(stringify!($field))?.unwrap_or_else(|| $default)
    };
    (@read $f:ident, $field:ident as $name:literal = $default:expr) => {
        $f.opt($name)?.unwrap_or_else(|| $default)
    };
}
pub(crate) use struct_from_json;

#[cold]
fn in_field(name: &str, error: String) -> String {
    format!("`{name}`: {error}")
}

#[cold]
fn missing(name: &str) -> String {
    format!("missing field `{name}`")
}

#[cold]
fn expected(what: &str, found: &Value) -> String {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("expected {what}, found {found}")
}

impl FromJson for Value {
    fn from_json(value: Value) -> Result<Self, String> {
        Ok(value)
    }
}

impl FromJson for String {
    fn from_json(value: Value) -> Result<Self, String> {
        string(value)
    }
}

impl FromJson for bool {
    fn from_json(value: Value) -> Result<Self, String> {
        value.as_bool().ok_or_else(|| expected("a boolean", &value))
    }
}

impl FromJson for u64 {
    fn from_json(value: Value) -> Result<Self, String> {
        value
            .as_u64()
            .ok_or_else(|| expected("a whole number of at least 0", &value))
    }
}

impl FromJson for u32 {
    fn from_json(value: Value) -> Result<Self, String> {
        u32::try_from(u64::from_json(value)?).map_err(|_| "number out of range".to_owned())
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: Value) -> Result<Self, String> {
        // A plain loop, and the rest in functions that are not generic: this is compiled
        // once per element type.
        let items = array(value)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            out.push(T::from_json(item).map_err(|e| at_index(i, e))?);
        }
        Ok(out)
    }
}

fn array(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(expected("an array", &other)),
    }
}

#[cold]
fn at_index(i: usize, error: String) -> String {
    format!("[{i}]: {error}")
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            value => T::from_json(value).map(Some),
        }
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    //! What serde writes (as the devserver does) is what `FromJson` reads, for every type
    //! the client decodes, with optional fields present and absent and every variant.

    use super::*;
    use crate::codec::engineio::OpenHandshake;
    use crate::envelope::SealedPayload;
    use crate::error::ErrorCode;
    use crate::model::*;
    use crate::outbox::{OutboxEntry, SendStatus};
    use crate::protocol::*;
    use crate::session::Cursor;
    use meridian_test_macros::meridian_test;
    use serde::Serialize;
    use serde_json::json;
    use std::fmt::Debug;

    /// Writes `sent` with serde, reads it back with `FromJson` and with serde's derive.
    fn round_trip<T>(sent: T)
    where
        T: Serialize + serde::de::DeserializeOwned + FromJson + PartialEq + Debug,
    {
        let text = serde_json::to_string(&sent).expect("serializes");
        let read: T = from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(read, sent, "{text}");
        let by_serde: T = serde_json::from_str(&text).expect("serde reads it too");
        assert_eq!(by_serde, read);
    }

    fn id<T: TryFrom<&'static str>>(s: &'static str) -> T
    where
        T::Error: Debug,
    {
        T::try_from(s).expect("valid id")
    }

    fn sealed() -> SealedPayload {
        SealedPayload {
            suite: "x25519-hkdf-sha256/chacha20poly1305".into(),
            enc: "ZW5j".into(),
            ct: "Y3Q=".into(),
        }
    }

    fn message(seq: u64, sealed_body: bool) -> Message {
        Message {
            space: id("acme:general"),
            seq,
            id: id("m-1"),
            sender: id("ana"),
            body: if sealed_body {
                String::new()
            } else {
                "hi".into()
            },
            sealed: sealed_body.then(sealed),
            sent_at_ms: 1_700_000_000_000,
            trace: sealed_body.then(|| "00-abc-def-01".into()),
        }
    }

    fn location(residency: Residency, kind: SpaceKind) -> SpaceLocation {
        SpaceLocation {
            space: id("acme:dm-1"),
            region: id("eu-west"),
            company: id("acme"),
            kind,
            residency,
        }
    }

    fn receipt() -> SendReceipt {
        SendReceipt {
            message_id: id("m-9"),
            seq: 9,
            sent_at_ms: 5,
        }
    }

    #[meridian_test]
    fn what_serde_writes_is_what_the_client_reads() {
        round_trip(message(1, false));
        round_trip(message(u64::MAX, true));
        round_trip(receipt());
        round_trip(location(Residency::Dr, SpaceKind::Channel));
        round_trip(location(Residency::Ds, SpaceKind::Dm));
        round_trip(UserLocation {
            user: id("sam"),
            home_region: id("us-east"),
            policy: id("global"),
        });
        for flavor in [None, Some(id("eu"))] {
            round_trip(SessionInfo {
                user: id("ana"),
                display_name: "Ana".into(),
                company: id("acme"),
                home_region: id("eu-west"),
                policy: id("eu-strict"),
                flavor,
            });
        }
        for since in [None, Some(3)] {
            round_trip(JoinReply {
                space: id("s"),
                head_seq: 4,
                missed: if since.is_some() {
                    vec![message(4, false)]
                } else {
                    vec![]
                },
                complete: since.is_none(),
                oldest_seq: since.unwrap_or(1),
                epoch: since.map(|_| "e1".to_owned()).unwrap_or_default(),
            });
        }
        round_trip(SendBatchReply {
            receipts: vec![receipt(), receipt()],
        });
        round_trip(HistoryReply {
            messages: vec![message(1, false), message(2, true)],
        });
        round_trip(Empty {});
        for status in [
            PresenceStatus::Online,
            PresenceStatus::Away,
            PresenceStatus::Offline,
        ] {
            round_trip(PresenceEvent {
                user: id("ana"),
                status,
                space: id("s"),
            });
            round_trip(Notification::ContactPresence {
                user: id("sam"),
                status,
            });
        }
        for user in [None, Some(id("ana"))] {
            round_trip(TypingEvent {
                space: id("s"),
                user,
                typing: true,
            });
        }
        round_trip(Notification::Mention {
            space: id("s"),
            message_id: id("m"),
            seq: 2,
            from: id("ana"),
        });
        round_trip(Notification::DmInvite {
            space: id("s"),
            from: id("ana"),
        });
        for (notification, sealed) in [
            (
                Some(Notification::DmInvite {
                    space: id("s"),
                    from: id("ana"),
                }),
                None,
            ),
            (None, Some(sealed())),
        ] {
            round_trip(Notify {
                id: "n-1".into(),
                notification,
                sealed,
            });
        }
        round_trip(Cursor {
            last_seq: 7,
            epoch: "e".into(),
        });
        for handshake in [
            OpenHandshake {
                sid: "sid".into(),
                upgrades: vec![],
                ping_interval: 25_000,
                ping_timeout: 20_000,
                max_payload: None,
            },
            OpenHandshake {
                sid: "sid".into(),
                upgrades: vec!["websocket".into()],
                ping_interval: 1,
                ping_timeout: 2,
                max_payload: Some(1_000_000),
            },
        ] {
            round_trip(handshake);
        }
    }

    #[meridian_test]
    fn errors_replies_and_outbox_records_read_back() {
        for code in [
            ErrorCode::PolicyViolation,
            ErrorCode::NotFound,
            ErrorCode::Unauthorized,
            ErrorCode::InvalidInput,
            ErrorCode::DirectoryUnavailable,
            ErrorCode::Closed,
            ErrorCode::Timeout,
            ErrorCode::Protocol,
            ErrorCode::Moved,
            ErrorCode::Transport,
            ErrorCode::Integrity,
            ErrorCode::Internal,
        ] {
            let body = ErrorBody {
                code,
                message: "no".into(),
                region: (code == ErrorCode::PolicyViolation).then(|| id("us-east")),
            };
            round_trip(body.clone());
            round_trip(Reply::<Empty>::Error(body.clone()));
            let status = SendStatus::Failed {
                code,
                message: "refused".into(),
            };
            round_trip(OutboxEntry {
                key: id("k-1"),
                space: id("s"),
                body: "hello".into(),
                trace: None,
                order: 3,
                status,
            });
        }
        round_trip(Reply::Ok(Empty {}));
        round_trip(Reply::Ok(receipt()));
        round_trip(Reply::Ok(location(Residency::Ds, SpaceKind::Dm)));
        round_trip(OutboxEntry {
            key: id("k-2"),
            space: id("s"),
            body: "hello".into(),
            trace: Some("t".into()),
            order: 0,
            status: SendStatus::Queued,
        });
    }

    #[meridian_test]
    fn federation_documents_read_back() {
        let doc = FederationDoc {
            version: 3,
            issued_at_ms: 10,
            regions: vec![
                Region {
                    id: id("eu-west"),
                    name: "EU West".into(),
                    socket_url: "ws://127.0.0.1:1".into(),
                    public_key: Some("a2V5".into()),
                },
                Region {
                    id: id("us-east"),
                    name: "US East".into(),
                    socket_url: "wss://us.example".into(),
                    public_key: None,
                },
            ],
            policies: vec![
                GeoPolicy {
                    id: id("global"),
                    mode: PolicyMode::Strict,
                    residency: Residency::Dr,
                },
                GeoPolicy {
                    id: id("eu-strict"),
                    mode: PolicyMode::Whitelist {
                        regions: vec![id("eu-west")],
                    },
                    residency: Residency::Ds,
                },
            ],
            flavors: [RolloutState::Shadow, RolloutState::Beta, RolloutState::Ga]
                .into_iter()
                .map(|rollout| Flavor {
                    id: id("eu"),
                    regions: vec![id("eu-west")],
                    rollout,
                })
                .collect(),
            expires_at_ms: 99,
            next_signing_keys: vec![FederationKey {
                id: "k2".into(),
                public_key: "cHVi".into(),
            }],
        };
        round_trip(doc.clone());
        round_trip(FederationDoc {
            expires_at_ms: u64::MAX,
            next_signing_keys: vec![],
            ..doc
        });
        round_trip(SignedFederationDoc {
            document: "{}".into(),
            key_id: "k1".into(),
            signature: "c2ln".into(),
        });
        // Absent optional fields take serde's defaults.
        let bare: FederationDoc = from_value(json!({
            "version": 1, "issued_at_ms": 0, "regions": [], "policies": [], "flavors": []
        }))
        .expect("reads");
        assert_eq!(bare.expires_at_ms, u64::MAX);
        assert!(bare.next_signing_keys.is_empty());
    }

    #[meridian_test]
    fn bad_input_is_refused_with_the_field_named() {
        let no_seq = json!({"message_id": "m", "sent_at_ms": 1});
        let e = from_value::<SendReceipt>(no_seq).unwrap_err();
        assert!(e.contains("`seq`"), "{e}");
        let negative = json!({"message_id": "m", "seq": -1, "sent_at_ms": 1});
        let e = from_value::<SendReceipt>(negative).unwrap_err();
        assert!(e.contains("`seq`") && e.contains("whole number"), "{e}");
        let bad_id = json!({"message_id": "has space", "seq": 1, "sent_at_ms": 1});
        let e = from_value::<SendReceipt>(bad_id).unwrap_err();
        assert!(e.contains("`message_id`"), "{e}");
        let nested = json!({"messages": [{"space": "s", "seq": 1, "id": "m", "sender": "a",
            "body": "x", "sent_at_ms": "soon"}]});
        let e = from_value::<HistoryReply>(nested).unwrap_err();
        assert!(e.contains("[0]") && e.contains("`sent_at_ms`"), "{e}");
        let e = from_value::<PresenceStatus>(json!("busy")).unwrap_err();
        assert!(e.contains("busy"), "{e}");
        // An unknown error code from a newer server is refused as a whole reply.
        let unknown = json!({"error": {"code": "brand_new", "message": "x"}});
        assert!(from_value::<Reply<Empty>>(unknown).is_err());
        assert!(from_value::<Reply<Empty>>(json!({"maybe": {}})).is_err());
        assert!(from_value::<Notification>(json!({"kind": "poke"})).is_err());
        assert!(from_value::<Empty>(json!([])).is_err());
        assert!(from_str::<Message>("{\"space\":").is_err());
        let big = json!({"space": "s", "limit": u64::from(u32::MAX) + 1});
        assert!(from_value::<Vec<u32>>(json!([big["limit"]])).is_err());
    }

    #[meridian_test]
    fn unknown_fields_are_ignored_unless_denied() {
        let extra = json!({"message_id": "m", "seq": 1, "sent_at_ms": 1, "new": true});
        assert!(from_value::<SendReceipt>(extra.clone()).is_ok());
        let mut fields = Fields::of(extra).expect("an object");
        let _: String = fields.field("message_id").expect("present");
        let _: u64 = fields.field("seq").expect("present");
        let _: u64 = fields.field("sent_at_ms").expect("present");
        assert_eq!(fields.deny_unknown().unwrap_err(), "unknown field `new`");
    }

    /// What the writer writes is the JSON serde_json writes for the same value: strings
    /// escaped alike (quotes, backslashes, control characters, non-ASCII), numbers,
    /// booleans, nulls, nesting and arrays.
    #[meridian_test]
    fn the_object_writer_writes_what_serde_json_writes() {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} é 😀 </script>";
        let text = object_text(|w| {
            w.str("s", tricky)
                .opt_str("none", None)
                .opt_str("some", Some("x"))
                .num("n", u64::MAX)
                .opt_num("m", None)
                .opt_num("k", Some(0))
                .bool("t", true)
                .bool("f", false)
                .null("z")
                .object("o", |w| {
                    w.str("inner", "y").object("empty", |_| {});
                });
        });
        let expected = serde_json::json!({
            "s": tricky, "none": null, "some": "x", "n": u64::MAX, "m": null, "k": 0,
            "t": true, "f": false, "z": null, "o": { "inner": "y", "empty": {} },
        });
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, expected);
        // Field by field in the order written, each escaped as serde_json escapes it.
        assert!(text.starts_with(&format!(
            "{{\"s\":{},",
            serde_json::to_string(tricky).unwrap()
        )));

        let array = array_text(&[1u64, 2], |w, n| {
            w.num("n", *n);
        });
        assert_eq!(array, r#"[{"n":1},{"n":2}]"#);
        assert_eq!(array_text::<u64>(&[], |_, _| {}), "[]");
    }

    /// What `ToJson` writes is what serde writes (and the devserver reads), for every type
    /// the client sends, with each optional field present and absent.
    #[meridian_test]
    fn to_json_writes_what_serde_writes() {
        fn same<T: ToJson + serde::Serialize>(value: &T) {
            let ours: Value = serde_json::from_str(&to_text(value)).expect("valid JSON");
            assert_eq!(ours, serde_json::to_value(value).unwrap());
        }
        let space = SpaceId::new("space-1").unwrap();
        let key = crate::envelope::KeyPair::generate().public().clone();
        for public_key in [None, Some(key)] {
            same(&Auth {
                token: "t\"oken\n".into(),
                protocol: PROTOCOL_VERSION,
                public_key,
            });
        }
        for (since, epoch) in [(None, None), (Some(7), Some("e1".to_owned()))] {
            same(&JoinRequest {
                space: space.clone(),
                since,
                epoch,
            });
        }
        same(&LeaveRequest {
            space: space.clone(),
        });
        let sealed = SealedPayload {
            suite: "s".into(),
            enc: "e".into(),
            ct: "c".into(),
        };
        let sends: Vec<SendRequest> = [(None, None), (Some(sealed), Some("00-ab-cd-01"))]
            .into_iter()
            .map(|(sealed, trace)| SendRequest {
                space: space.clone(),
                key: IdempotencyKey::new("k1").unwrap(),
                body: "hé \u{1} \"there\"".into(),
                sealed,
                trace: trace.map(str::to_owned),
            })
            .collect();
        for send in &sends {
            same(send);
        }
        same(&SendBatchRequest {
            space: space.clone(),
            messages: sends,
        });
        for before in [None, Some(9)] {
            same(&HistoryRequest {
                space: space.clone(),
                before,
                limit: 50,
            });
        }
        for status in [
            PresenceStatus::Online,
            PresenceStatus::Away,
            PresenceStatus::Offline,
        ] {
            same(&PresenceRequest { status });
        }
        for user in [None, Some(UserId::new("u1").unwrap())] {
            same(&TypingEvent {
                space: space.clone(),
                user,
                typing: true,
            });
        }
        same(&DmCreateRequest {
            peer: UserId::new("u2").unwrap(),
        });
        // And what the client keeps in its store.
        let failed = SendStatus::Failed {
            code: ErrorCode::PolicyViolation,
            message: "no \"there\"".into(),
        };
        for (trace, status) in [(None, SendStatus::Queued), (Some("t".to_owned()), failed)] {
            same(&OutboxEntry {
                key: IdempotencyKey::new("k1").unwrap(),
                space: space.clone(),
                body: "b".into(),
                trace,
                order: 3,
                status,
            });
        }
        same(&Cursor {
            last_seq: 12,
            epoch: "e".into(),
        });
        // And the handshake (the codec encodes it for the devserver's side).
        for (upgrades, max_payload) in [
            (vec![], None),
            (vec!["a\"".to_owned(), "b".to_owned()], Some(9)),
        ] {
            same(&OpenHandshake {
                sid: "sid".into(),
                upgrades,
                ping_interval: 25_000,
                ping_timeout: 20_000,
                max_payload,
            });
        }
    }
}
