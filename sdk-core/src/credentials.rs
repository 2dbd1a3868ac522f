//! Credentials: the bearer token in use, and its renewal through the app's provider.
//!
//! Owns: the current token, when it expires, and renewing it once however many parts of
//! the SDK find it rejected at the same time. Must never log a token, and never hold its
//! lock across an await.

use std::sync::{Arc, Mutex, PoisonError};

use crate::driver::{BoxFuture, MaybeSend};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// A bearer token from the app's [`TokenProvider`].
#[derive(Clone)]
pub struct Token {
    /// The token itself.
    pub value: String,
    /// When it stops being valid (ms since the Unix epoch), if the app knows.
    pub expires_at_ms: Option<u64>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// How the app hands the SDK a fresh token: called before the current one expires and
/// whenever the directory or a region rejects it, so the app never sees an expired-token
/// error while its user's session is valid.
pub trait TokenProvider: MaybeSend + 'static {
    /// A fresh token (typically from the app's auth backend).
    fn fetch_token(&self) -> BoxFuture<'_, Result<Token>>;
}

struct Current {
    token: Secret,
    expires_at_ms: Option<u64>,
    generation: u64,
}

/// The token in use, shared by the directory and the engine.
pub(crate) struct Credentials {
    current: Mutex<Current>,
    provider: Option<Arc<dyn TokenProvider>>,
    renewing: futures::lock::Mutex<()>,
}

impl Credentials {
    pub(crate) fn new(token: Token, provider: Option<Arc<dyn TokenProvider>>) -> Result<Self> {
        Ok(Self {
            current: Mutex::new(Current {
                token: Secret::new(token.value)?,
                expires_at_ms: token.expires_at_ms,
                generation: 0,
            }),
            provider,
            renewing: futures::lock::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token in use, and its generation (to name it when reporting it rejected).
    pub(crate) fn current(&self) -> (Secret, u64) {
        let c = self.lock();
        (c.token.clone(), c.generation)
    }

    /// When the token in use expires, if known.
    pub(crate) fn expires_at_ms(&self) -> Option<u64> {
        self.lock().expires_at_ms
    }

    /// Whether a rejected token can be replaced.
    pub(crate) fn renewable(&self) -> bool {
        self.provider.is_some()
    }

    /// Replaces the token of generation `seen`. When another caller already did, its
    /// result is returned without asking the provider again.
    pub(crate) async fn renew(&self, seen: u64) -> Result<Secret> {
        let Some(provider) = &self.provider else {
            return Err(Error::Unauthorized(
                "the token was rejected and no token provider is configured".into(),
            ));
        };
        let _one_at_a_time = self.renewing.lock().await;
        {
            let c = self.lock();
            if c.generation != seen {
                return Ok(c.token.clone());
            }
        }
        let token = provider.fetch_token().await.map_err(|e| {
            Error::Unauthorized(format!("the token provider could not renew the token: {e}"))
        })?;
        let secret = Secret::new(token.value)?;
        let mut c = self.lock();
        c.token = secret.clone();
        c.expires_at_ms = token.expires_at_ms;
        c.generation += 1;
        tracing::debug!(generation = c.generation, "token renewed");
        Ok(secret)
    }
}
