//! JSON decoding for the whole core, in one place.
//!
//! Owns: how serde meets JSON on the way in. Natively that is serde_json itself, the
//! fastest path. On wasm32 text is first parsed into a `serde_json::Value` and every type is
//! read from that, so that serde_json's parser is compiled once (for `Value`) rather than
//! once per type: there, code size is what the user pays for (see the size budget in
//! `bindings/ts/README.md`). Must never be bypassed by a direct `serde_json::from_*` call in
//! the core outside tests.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes JSON text. The error is serde's description of what was wrong.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
    #[cfg(target_arch = "wasm32")]
    {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        from_value(value)
    }
}

/// Decodes JSON text held in a `str`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    from_slice(text.as_bytes())
}

/// Decodes an already parsed JSON value.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
    #[cfg(target_arch = "wasm32")]
    {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}
