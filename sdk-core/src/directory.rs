//! The federation directory, as the client sees it: the federation document, the session
//! bootstrap, and where spaces and users are housed, cached.
//!
//! Owns: the HTTP exchanges with the directory (through the [`Driver`]), validation of what
//! it answers, and the cache with its staleness rules. A refresh that fails keeps the last
//! good document. Must never decide policy, and never log the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use crate::credentials::Credentials;
use crate::driver::{BoxFuture, Driver, HttpMethod, HttpRequest, HttpResponse};
use crate::error::{Error, Result};
use crate::json::FromJson;
use crate::model::{
    FederationDoc, SessionInfo, SignedFederationDoc, SpaceId, SpaceLocation, UserId, UserLocation,
};
use crate::protocol::ErrorBody;
use crate::secret::Secret;
use crate::time::Instant;
use crate::trust::Trust;

/// How long directory answers are trusted before they are asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// Lifetime of the cached federation document.
    pub document_ttl: Duration,
    /// Lifetime of a cached space or user location.
    pub location_ttl: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            document_ttl: Duration::from_secs(300),
            location_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Default)]
struct Cache {
    doc: Option<(FederationDoc, Instant)>,
    spaces: HashMap<SpaceId, (SpaceLocation, Instant)>,
    users: HashMap<UserId, (UserLocation, Instant)>,
}

/// The client's view of the directory.
pub struct Directory {
    base_url: String,
    credentials: Arc<Credentials>,
    config: DirectoryConfig,
    driver: Arc<dyn Driver>,
    cache: Mutex<Cache>,
    trust: Mutex<Trust>,
    /// Where refused documents are reported (the engine, once it runs).
    reports: Mutex<Option<futures::channel::mpsc::UnboundedSender<crate::engine::Command>>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// A directory at `base_url` (e.g. `http://127.0.0.1:7700`), asked with the token of
    /// `credentials` (renewed and asked again once when the directory rejects it).
    pub(crate) fn new(
        base_url: &str,
        credentials: Arc<Credentials>,
        trust: Trust,
        config: DirectoryConfig,
        driver: Arc<dyn Driver>,
    ) -> Result<Self> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::InvalidInput(
                "the directory url must start with http:// or https://".into(),
            ));
        }
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
            config,
            driver,
            cache: Mutex::new(Cache::default()),
            trust: Mutex::new(trust),
            reports: Mutex::new(None),
        })
    }

    /// Sends reports of refused documents to the engine from now on.
    pub(crate) fn report_to(
        &self,
        commands: futures::channel::mpsc::UnboundedSender<crate::engine::Command>,
    ) {
        *self.reports.lock().unwrap_or_else(PoisonError::into_inner) = Some(commands);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds plain data: a panic elsewhere cannot leave it half-written.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The federation document, fetched again when stale. When the refresh fails the last
    /// good document is kept and the error is returned only if there is none.
    pub fn federation(&self) -> BoxFuture<'_, Result<FederationDoc>> {
        // Boxed, as the other lookups awaited from several places: compiled once, not
        // inlined in each caller's state machine (which the web bundle pays for).
        Box::pin(async move {
            let now = self.driver.now();
            let cached = self.cache().doc.clone();
            if let Some((doc, at)) = &cached
                && now.saturating_since(*at) < self.config.document_ttl
            {
                return Ok(doc.clone());
            }
            match self.refresh_federation().await {
                Ok(doc) => Ok(doc),
                Err(e) => match cached {
                    Some((doc, _)) => {
                        tracing::warn!(error = %e, "directory refresh failed; keeping the last good document");
                        Ok(doc)
                    }
                    None => Err(e),
                },
            }
        })
    }

    /// Fetches the federation document now and verifies it (see [`Trust::accept`]): a
    /// document that isn't signed by a trusted key, has expired, or is older than the one
    /// held is refused, reported as [`crate::Event::FederationDocumentRefused`], and the
    /// last good document stays in use.
    pub async fn refresh_federation(&self) -> Result<FederationDoc> {
        let signed: SignedFederationDoc = self.get("/v1/federation", HttpMethod::Get).await?;
        let accepted = self
            .trust
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .accept(&signed, self.driver.unix_time_ms());
        match accepted {
            Ok(doc) => {
                let now = self.driver.now();
                self.cache().doc = Some((doc.clone(), now));
                Ok(doc)
            }
            Err(error) => {
                tracing::warn!(code = %error.code(), "federation document refused");
                let reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(commands) = reports.as_ref() {
                    let _ = commands.unbounded_send(crate::engine::Command::Notify(
                        crate::Event::FederationDocumentRefused {
                            error: error.clone(),
                        },
                    ));
                }
                Err(error)
            }
        }
    }

    /// Who the token belongs to.
    pub async fn session(&self) -> Result<SessionInfo> {
        self.get("/v1/session", HttpMethod::Post).await
    }

    /// Where `space` is housed (cached).
    pub fn locate_space<'a>(&'a self, space: &'a SpaceId) -> BoxFuture<'a, Result<SpaceLocation>> {
        // Boxed: see `federation`.
        Box::pin(async move {
            let now = self.driver.now();
            if let Some((loc, at)) = self.cache().spaces.get(space)
                && now.saturating_since(*at) < self.config.location_ttl
            {
                return Ok(loc.clone());
            }
            let loc: SpaceLocation = self
                .get(&format!("/v1/spaces/{space}/location"), HttpMethod::Get)
                .await?;
            if &loc.space != space {
                return Err(Error::DirectoryUnavailable(
                    "directory located another space than the one asked".into(),
                ));
            }
            self.remember_space(loc.clone());
            Ok(loc)
        })
    }

    /// Where `space` is housed, with that region's entry in the federation document.
    pub async fn locate_space_region(
        &self,
        space: &SpaceId,
    ) -> Result<(SpaceLocation, crate::model::Region)> {
        let loc = self.locate_space(space).await?;
        let doc = self.federation().await?;
        let region = doc.region(&loc.region).cloned().ok_or_else(|| {
            Error::DirectoryUnavailable(format!(
                "space {space} is housed in region {} which the federation document lacks",
                loc.region
            ))
        })?;
        Ok((loc, region))
    }

    /// Where `user` is homed (cached).
    pub async fn locate_user(&self, user: &UserId) -> Result<UserLocation> {
        let now = self.driver.now();
        if let Some((loc, at)) = self.cache().users.get(user)
            && now.saturating_since(*at) < self.config.location_ttl
        {
            return Ok(loc.clone());
        }
        let loc: UserLocation = self
            .get(&format!("/v1/users/{user}/location"), HttpMethod::Get)
            .await?;
        if &loc.user != user {
            return Err(Error::DirectoryUnavailable(
                "directory located another user than the one asked".into(),
            ));
        }
        self.cache().users.insert(user.clone(), (loc.clone(), now));
        Ok(loc)
    }

    /// Records a location learned elsewhere (a DM the region just created).
    pub fn remember_space(&self, loc: SpaceLocation) {
        let now = self.driver.now();
        self.cache().spaces.insert(loc.space.clone(), (loc, now));
    }

    /// Forgets where `space` is, after a region answered "moved".
    pub fn forget_space(&self, space: &SpaceId) {
        self.cache().spaces.remove(space);
    }

    /// Asks the directory for `path` and reads the answer as a `T`.
    async fn get<T: FromJson>(&self, path: &str, method: HttpMethod) -> Result<T> {
        // Everything but the last step is the same for every T: compiled once.
        let answer = self.get_json(path, method).await?;
        T::from_json(answer).map_err(|e| garbage(path, e))
    }

    /// The answer to `path` as JSON, with the token renewed once if the directory refused
    /// it. Boxed: see `federation`.
    fn get_json<'a>(&'a self, path: &'a str, method: HttpMethod) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            let (token, generation) = self.credentials.current();
            match self.ask(path, method, &token).await {
                Err(Error::Unauthorized(_)) if self.credentials.renewable() => {
                    let token = self.credentials.renew(generation).await?;
                    self.ask(path, method, &token).await
                }
                other => other,
            }
        })
    }

    /// One request with `token`. Not an `async fn`: the request is built here and only
    /// the driver's future is awaited, so both calls in `get_json` share one copy.
    fn ask(
        &self,
        path: &str,
        method: HttpMethod,
        token: &Secret,
    ) -> BoxFuture<'static, Result<Value>> {
        let request = HttpRequest {
            method,
            url: format!("{}{path}", self.base_url),
            bearer: Some(token.expose().to_owned()),
        };
        let sent = self.driver.http(request);
        let path = path.to_owned();
        Box::pin(async move { answer(&path, sent.await?) })
    }
}

/// Reads the directory's answer: the JSON of a success, or the error it stands for.
fn answer(path: &str, response: HttpResponse) -> Result<Value> {
    match response.status {
        200..=299 => crate::json::from_slice(&response.body).map_err(|e| garbage(path, e)),
        status => {
            let body: Option<ErrorBody> = crate::json::from_slice(&response.body).ok();
            let message = body
                .as_ref()
                .map(|b| b.message.clone())
                .unwrap_or_else(|| format!("HTTP {status}"));
            Err(match status {
                400 => Error::InvalidInput(message),
                401 | 403 => Error::Unauthorized(message),
                404 => Error::NotFound(message),
                _ => Error::DirectoryUnavailable(format!("{path}: HTTP {status}: {message}")),
            })
        }
    }
}

#[cold]
fn garbage(path: &str, error: String) -> Error {
    Error::DirectoryUnavailable(format!("directory answered {path} with garbage: {error}"))
}
