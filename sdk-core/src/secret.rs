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

/// Random bytes from the platform's secure random source, drawn from a per-thread buffer
/// refilled 4 KiB at a time: idempotency keys and trace ids need unpredictable, unique
/// values, not a system call (or, on the web, a call into `crypto`) per send.
fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    const POOL: usize = 4096;
    thread_local! {
        static POOL_BYTES: std::cell::RefCell<(Vec<u8>, usize)> =
            const { std::cell::RefCell::new((Vec::new(), 0)) };
    }
    POOL_BYTES.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if bytes.len() < POOL || *used + N > POOL {
            bytes.resize(POOL, 0);
            getrandom::fill(bytes)
                .map_err(|e| Error::Internal(format!("no secure random source: {e}")))?;
            *used = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes[*used..*used + N]);
        // Each byte is handed out once.
        bytes[*used..*used + N].fill(0);
        *used += N;
        Ok(out)
    })
}

/// `bytes` as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// 128 random bits (see [`random_bytes`]) as 32 hex characters.
pub(crate) fn random_hex128() -> Result<String> {
    Ok(hex(&random_bytes::<16>()?))
}

/// 64 random bits as 16 hex characters.
pub(crate) fn random_hex64() -> Result<String> {
    Ok(hex(&random_bytes::<8>()?))
}

/// A seed for non-cryptographic randomness (backoff jitter).
pub(crate) fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // Jitter only needs to differ between clients; a fixed seed is a safe fallback.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;

    #[meridian_test]
    fn random_hex_is_lowercase_hex_of_the_right_length_and_never_repeats() {
        let mut seen = std::collections::HashSet::new();
        // More than a pool's worth, so the pool is refilled along the way.
        for _ in 0..1000 {
            let key = random_hex128().unwrap();
            assert_eq!(key.len(), 32);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{key}"
            );
            assert!(seen.insert(key), "a repeated key");
        }
        assert_eq!(random_hex64().unwrap().len(), 16);
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
