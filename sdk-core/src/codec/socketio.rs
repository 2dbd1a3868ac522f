//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`.
//!
//! Binary packets (types 5 and 6) are refused: the application protocol is JSON only.

use serde_json::Value;

use super::CodecError;

/// The largest ack id accepted (the reference implementations use a JS number counter).
const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// What a Socket.IO packet is.
#[derive(Debug, Clone, PartialEq)]
pub enum SioPacketKind {
    /// `0`: join a namespace (client, with optional auth) or accept a join (server, with sid).
    Connect(Option<Value>),
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event: name and arguments, with an ack id when an answer is wanted.
    Event {
        /// The event's name.
        name: String,
        /// The event's arguments.
        args: Vec<Value>,
        /// The id the answer must carry.
        ack_id: Option<u64>,
    },
    /// `3`: the answer to an event.
    Ack {
        /// The id of the event answered.
        ack_id: u64,
        /// The answer's arguments.
        args: Vec<Value>,
    },
    /// `4`: the server refused the namespace join.
    ConnectError(Value),
}

/// A Socket.IO packet in a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct SioPacket {
    /// The namespace, `/` by default.
    pub namespace: String,
    /// The packet itself.
    pub kind: SioPacketKind,
}

/// Appends `items` as a JSON array, written straight into `out` (no array of clones).
fn write_array<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a Value>) {
    crate::json::write_list(out, items, crate::json::write);
}

impl SioPacket {
    /// A packet in the main namespace.
    pub fn main(kind: SioPacketKind) -> Self {
        Self {
            namespace: "/".into(),
            kind,
        }
    }

    /// An event with its arguments and an optional ack id, in the main namespace.
    pub fn event(name: &str, args: Vec<Value>, ack_id: Option<u64>) -> Self {
        Self::main(SioPacketKind::Event {
            name: name.into(),
            args,
            ack_id,
        })
    }

    /// An event with one argument already written as JSON text (the client's own
    /// requests, see [`crate::json::ToJson`]), rendered as [`Self::encode`] renders
    /// `Self::event(name, vec![arg], ack_id)`.
    pub fn encode_event(name: &str, arg: &str, ack_id: Option<u64>) -> String {
        let mut out = vec![b'2'];
        if let Some(id) = ack_id {
            out.extend_from_slice(id.to_string().as_bytes());
        }
        out.push(b'[');
        // Writing to memory cannot fail.
        let _ = serde_json::to_writer(&mut out, name);
        out.push(b',');
        out.extend_from_slice(arg.as_bytes());
        out.push(b']');
        String::from_utf8(out).unwrap_or_default()
    }

    /// A CONNECT to the main namespace with its auth payload already written as JSON text,
    /// rendered as [`Self::encode`] renders it.
    pub fn encode_connect(auth: &str) -> String {
        format!("0{auth}")
    }

    /// Renders the packet as the payload of an Engine.IO message.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        out.push(match self.kind {
            SioPacketKind::Connect(_) => b'0',
            SioPacketKind::Disconnect => b'1',
            SioPacketKind::Event { .. } => b'2',
            SioPacketKind::Ack { .. } => b'3',
            SioPacketKind::ConnectError(_) => b'4',
        });
        if self.namespace != "/" {
            out.extend_from_slice(self.namespace.as_bytes());
            out.push(b',');
        }
        match &self.kind {
            SioPacketKind::Connect(None) | SioPacketKind::Disconnect => {}
            SioPacketKind::Connect(Some(v)) | SioPacketKind::ConnectError(v) => {
                crate::json::write(&mut out, v);
            }
            SioPacketKind::Event { name, args, ack_id } => {
                if let Some(id) = ack_id {
                    out.extend_from_slice(id.to_string().as_bytes());
                }
                let name = Value::String(name.clone());
                write_array(&mut out, std::iter::once(&name).chain(args));
            }
            SioPacketKind::Ack { ack_id, args } => {
                out.extend_from_slice(ack_id.to_string().as_bytes());
                write_array(&mut out, args.iter());
            }
        }
        // Only ASCII and serde_json's output (UTF-8) went in.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Parses the payload of an Engine.IO message.
    pub fn decode(s: &str) -> Result<Self, CodecError> {
        let err = |m: &str| CodecError(format!("socket.io: {m}"));
        let mut rest = s;
        let kind = rest.chars().next().ok_or_else(|| err("empty packet"))?;
        rest = &rest[kind.len_utf8()..];
        if matches!(kind, '5' | '6') {
            return Err(err("binary packets are not supported"));
        }
        if !matches!(kind, '0'..='4') {
            return Err(err(&format!(
                "unknown packet type '{}'",
                kind.escape_default()
            )));
        }
        let mut namespace = "/".to_owned();
        if rest.starts_with('/') {
            let end = rest
                .find(',')
                .ok_or_else(|| err("namespace is not terminated by ','"))?;
            namespace = rest[..end].to_owned();
            rest = &rest[end + 1..];
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack_id = if digits > 0 {
            let id: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("ack id out of range"))?;
            if id > MAX_ACK_ID {
                return Err(err("ack id out of range"));
            }
            rest = &rest[digits..];
            Some(id)
        } else {
            None
        };
        let payload: Option<Value> = if rest.is_empty() {
            None
        } else {
            Some(crate::json::from_str(rest).map_err(|e| err(&format!("bad JSON payload: {e}")))?)
        };
        let kind = match kind {
            '0' => {
                if ack_id.is_some() {
                    return Err(err("connect packet with an ack id"));
                }
                match payload {
                    None => SioPacketKind::Connect(None),
                    Some(v @ Value::Object(_)) => SioPacketKind::Connect(Some(v)),
                    Some(_) => return Err(err("connect payload must be an object")),
                }
            }
            '1' => {
                if ack_id.is_some() || payload.is_some() {
                    return Err(err("disconnect packet with a payload"));
                }
                SioPacketKind::Disconnect
            }
            '2' => {
                let Some(Value::Array(mut arr)) = payload else {
                    return Err(err("event payload must be an array"));
                };
                if arr.is_empty() {
                    return Err(err("event without a name"));
                }
                let Value::String(name) = arr.remove(0) else {
                    return Err(err("event name must be a string"));
                };
                SioPacketKind::Event {
                    name,
                    args: arr,
                    ack_id,
                }
            }
            '3' => {
                let ack_id = ack_id.ok_or_else(|| err("ack without an id"))?;
                let Some(Value::Array(args)) = payload else {
                    return Err(err("ack payload must be an array"));
                };
                SioPacketKind::Ack { ack_id, args }
            }
            _ => {
                if ack_id.is_some() {
                    return Err(err("connect_error packet with an ack id"));
                }
                SioPacketKind::ConnectError(payload.unwrap_or(Value::Null))
            }
        };
        Ok(Self { namespace, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;
    // proptest does not build for wasm32-unknown-unknown: the property tests run natively.
    #[cfg(not(target_arch = "wasm32"))]
    use proptest::prelude::*;
    use serde_json::json;

    /// The client's own packets, written from JSON text, are what `encode` writes for
    /// the same packet.
    #[meridian_test]
    fn events_and_connects_written_from_text_match_encode() {
        let arg = json!({"space": "s\"1", "n": 1, "nested": {"a": [1, 2]}});
        let text = arg.to_string();
        for ack in [None, Some(0), Some(MAX_ACK_ID)] {
            for name in ["message:send", "odd \"name\" é"] {
                assert_eq!(
                    SioPacket::encode_event(name, &text, ack),
                    SioPacket::event(name, vec![arg.clone()], ack).encode()
                );
            }
        }
        assert_eq!(
            SioPacket::encode_connect(&text),
            SioPacket::main(SioPacketKind::Connect(Some(arg))).encode()
        );
    }

    #[meridian_test]
    fn decodes_the_examples_of_the_spec() {
        // Examples from the Socket.IO v5 protocol description.
        assert_eq!(
            SioPacket::decode("0").unwrap(),
            SioPacket::main(SioPacketKind::Connect(None))
        );
        assert_eq!(
            SioPacket::decode("0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}").unwrap(),
            SioPacket {
                namespace: "/admin".into(),
                kind: SioPacketKind::Connect(Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))),
            }
        );
        assert_eq!(
            SioPacket::decode("2[\"foo\"]").unwrap(),
            SioPacket::event("foo", vec![], None)
        );
        assert_eq!(
            SioPacket::decode("2/admin,456[\"project:delete\",123]").unwrap(),
            SioPacket {
                namespace: "/admin".into(),
                kind: SioPacketKind::Event {
                    name: "project:delete".into(),
                    args: vec![json!(123)],
                    ack_id: Some(456)
                },
            }
        );
        assert_eq!(
            SioPacket::decode("3/admin,456[]").unwrap(),
            SioPacket {
                namespace: "/admin".into(),
                kind: SioPacketKind::Ack {
                    ack_id: 456,
                    args: vec![]
                },
            }
        );
        assert_eq!(
            SioPacket::decode("4{\"message\":\"Not authorized\"}").unwrap(),
            SioPacket::main(SioPacketKind::ConnectError(
                json!({"message": "Not authorized"})
            ))
        );
        assert_eq!(
            SioPacket::decode("1/admin,").unwrap(),
            SioPacket {
                namespace: "/admin".into(),
                kind: SioPacketKind::Disconnect
            }
        );
    }

    #[meridian_test]
    fn encodes_like_the_reference_implementation() {
        assert_eq!(
            SioPacket::event("hello", vec![json!(1), json!("2")], Some(12)).encode(),
            "212[\"hello\",1,\"2\"]"
        );
        assert_eq!(
            SioPacket::main(SioPacketKind::Connect(Some(json!({"token": "t"})))).encode(),
            "0{\"token\":\"t\"}"
        );
        assert_eq!(SioPacket::main(SioPacketKind::Disconnect).encode(), "1");
    }

    #[meridian_test]
    fn refuses_malformed_packets() {
        for bad in [
            "",
            "7",
            "x[]",
            "2",
            "2{}",
            "2[]",
            "2[1]",
            "3[]",
            "3x",
            "0[1]",
            "1[]",
            "2/admin[\"no comma\"]",
            "2[\"unterminated\"",
            "299999999999999999999999[\"big\"]",
            "51-[\"bin\",{\"_placeholder\":true,\"num\":0}]",
            "61-0[{\"_placeholder\":true,\"num\":0}]",
        ] {
            assert!(SioPacket::decode(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,20}".prop_map(Value::String),
        ]
    }

    #[cfg(not(target_arch = "wasm32"))]
    proptest! {
        #[test]
        fn any_event_round_trips(
            ns in prop_oneof![Just("/".to_owned()), "/[a-z]{1,8}"],
            name in "[a-z:]{1,16}",
            args in prop::collection::vec(json_leaf(), 0..4),
            ack_id in prop::option::of(0u64..=MAX_ACK_ID),
        ) {
            let p = SioPacket { namespace: ns, kind: SioPacketKind::Event { name, args, ack_id } };
            prop_assert_eq!(SioPacket::decode(&p.encode()).unwrap(), p);
        }

        #[test]
        fn no_input_makes_the_decoders_panic(s in "\\PC{0,64}") {
            let _ = SioPacket::decode(&s);
            let _ = super::super::EioPacket::decode(&s);
        }
    }
}
