//! Engine.IO v4 packets over WebSocket: one packet per text frame, a one-digit type prefix.

use serde::{Deserialize, Serialize};

use super::CodecError;

/// The handshake the server sends in its `open` packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenHandshake {
    /// The Engine.IO session id.
    pub sid: String,
    /// Transports the server could upgrade to (empty over WebSocket).
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// How often the server pings, in ms.
    pub ping_interval: u64,
    /// How long the server waits for a pong, in ms.
    pub ping_timeout: u64,
    /// The largest payload the server accepts, in bytes.
    #[serde(default)]
    pub max_payload: Option<u64>,
}

crate::json::struct_from_json!(OpenHandshake {
    sid,
    upgrades = Vec::new(),
    ping_interval as "pingInterval",
    ping_timeout as "pingTimeout",
    max_payload as "maxPayload",
});

impl crate::json::ToJson for OpenHandshake {
    fn to_json(&self, w: &mut crate::json::ObjectWriter<'_>) {
        w.str("sid", &self.sid)
            .strings("upgrades", &self.upgrades)
            .num("pingInterval", self.ping_interval)
            .num("pingTimeout", self.ping_timeout)
            .opt_num("maxPayload", self.max_payload);
    }
}

/// An Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EioPacket {
    /// `0`: the server's handshake.
    Open(OpenHandshake),
    /// `1`: the transport is closing.
    Close,
    /// `2`: heartbeat request (the server pings in v4); the payload is echoed in the pong.
    Ping(String),
    /// `3`: heartbeat answer.
    Pong(String),
    /// `4`: a message: carries a Socket.IO packet.
    Message(String),
    /// `5`: transport upgrade (not used over a WebSocket-only session).
    Upgrade,
    /// `6`: no-op.
    Noop,
}

impl EioPacket {
    /// Parses one text frame.
    pub fn decode(frame: &str) -> Result<Self, CodecError> {
        let mut chars = frame.chars();
        let kind = chars
            .next()
            .ok_or_else(|| CodecError("empty engine.io frame".into()))?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => Self::Open(
                crate::json::from_str(rest)
                    .map_err(|e| CodecError(format!("bad engine.io open handshake: {e}")))?,
            ),
            '1' => Self::Close,
            '2' => Self::Ping(rest.to_owned()),
            '3' => Self::Pong(rest.to_owned()),
            '4' => Self::Message(rest.to_owned()),
            '5' => Self::Upgrade,
            '6' => Self::Noop,
            other => {
                return Err(CodecError(format!(
                    "unknown engine.io packet type '{}'",
                    other.escape_default()
                )));
            }
        })
    }

    /// Renders the packet as one text frame.
    pub fn encode(&self) -> String {
        match self {
            Self::Open(h) => format!("0{}", crate::json::to_text(h)),
            Self::Close => "1".into(),
            Self::Ping(p) => format!("2{p}"),
            Self::Pong(p) => format!("3{p}"),
            Self::Message(m) => format!("4{m}"),
            Self::Upgrade => "5".into(),
            Self::Noop => "6".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;

    #[meridian_test]
    fn decodes_the_open_handshake_of_the_spec() {
        let p = EioPacket::decode(
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )
        .unwrap();
        let EioPacket::Open(h) = p else {
            panic!("expected open, got {p:?}")
        };
        assert_eq!(h.sid, "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(h.ping_interval, 25000);
        assert_eq!(h.ping_timeout, 20000);
        assert_eq!(h.max_payload, Some(1_000_000));
    }

    #[meridian_test]
    fn round_trips_every_simple_packet() {
        for p in [
            EioPacket::Close,
            EioPacket::Ping(String::new()),
            EioPacket::Ping("probe".into()),
            EioPacket::Pong(String::new()),
            EioPacket::Message("2[\"hello\"]".into()),
            EioPacket::Upgrade,
            EioPacket::Noop,
        ] {
            assert_eq!(EioPacket::decode(&p.encode()).unwrap(), p);
        }
    }

    #[meridian_test]
    fn refuses_empty_unknown_and_broken_frames() {
        assert!(EioPacket::decode("").is_err());
        assert!(EioPacket::decode("7").is_err());
        assert!(EioPacket::decode("x").is_err());
        assert!(EioPacket::decode("0{not json").is_err());
        assert!(EioPacket::decode("0{}").is_err());
    }
}
