//! Secrets (bearer tokens): redacted in every `Debug`, zeroized on drop.
//!
//! Owns: the only way the core holds a token. Must never implement `Display`.

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A bearer token. `Debug` prints `<redacted>`; the memory is wiped when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a token; an empty one is refused.
    pub fn new(value: String) -> Result<Self> {
        if value.trim().is_empty() {
            return Err(Error::InvalidInput("the token is empty".into()));
        }
        Ok(Self(Zeroizing::new(value)))
    }

    /// The token itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// 128 bits from the platform's secure random source, as 32 hex characters.
pub(crate) fn random_hex128() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no secure random source: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A seed for non-cryptographic randomness (backoff jitter).
pub(crate) fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // Jitter only needs to differ between clients; a fixed seed is a safe fallback.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}
