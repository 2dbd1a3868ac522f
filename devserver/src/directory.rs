//! The directory: the federation's HTTP front door.
//!
//! Owns: `GET /v1/federation` (the federation document), `POST /v1/session` (who a bearer
//! token belongs to), `GET /v1/spaces/{space}/location` and `GET /v1/users/{user}/location`,
//! `POST /v1/dev/tokens` (mints a bearer token with an expiry; a dev-only control, not part
//! of the protocol, open to any caller on loopback), their JSON errors
//! (`meridian::protocol::ErrorBody`), permissive CORS for the web demo, and the fault hook
//! SDK tests use to prove their error handling (it spares the `/v1/dev/` controls).
//! Must never panic on any input, never log a token, and never answer from anything but
//! the shared registry (the regions create DMs there; the directory only reads).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use meridian::ErrorCode;
use std::collections::HashMap;

use meridian::model::{
    RegionId, SessionInfo, SignedFederationDoc, SpaceId, SpaceLocation, UserId, UserLocation,
};
use meridian::protocol::ErrorBody;
use serde::{Deserialize, Serialize};

use crate::DevserverError;
use crate::publisher::Publisher;
use crate::state::{Member, Shared, lock};

/// A failure the directory can be told to simulate (see `Federation::set_directory_fault`).
/// The dev controls under `/v1/dev/` are never affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryFault {
    /// Every `/v1` request answers 500 with an `internal` error body.
    Status500,
    /// Every `/v1` request answers 200 with a body that is not JSON.
    Garbage,
}

#[derive(Clone)]
pub(crate) struct DirectoryState {
    pub shared: Arc<Shared>,
    pub fault: Arc<Mutex<Option<DirectoryFault>>>,
    pub publisher: Arc<Publisher>,
    /// Spaces the directory lies about (adversarial tests): located in these regions.
    pub misdirected: Arc<Mutex<HashMap<SpaceId, RegionId>>>,
}

/// An error answer: a status and an `ErrorBody`.
struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self(
            status,
            ErrorBody {
                code,
                message: message.into(),
                region: None,
            },
        )
    }

    fn unauthorized(why: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            format!("unauthorized: {why}"),
        )
    }

    fn not_found(what: String) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("not found: {what}"),
        )
    }

    fn invalid(why: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            format!("invalid input: {why}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.0, Json(self.1)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The directory's routes.
pub(crate) fn router(state: DirectoryState) -> Router {
    Router::new()
        .route("/v1/federation", get(federation))
        .route("/v1/session", post(session))
        .route("/v1/spaces/{space}/location", get(space_location))
        .route("/v1/users/{user}/location", get(user_location))
        .route("/v1/dev/tokens", post(mint_token))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), faults))
        .layer(middleware::from_fn(cors))
        .with_state(state)
}

async fn federation(State(st): State<DirectoryState>) -> Json<SignedFederationDoc> {
    Json(st.publisher.serve(st.shared.federation_doc()))
}

async fn session(
    State(st): State<DirectoryState>,
    headers: HeaderMap,
) -> Result<Json<SessionInfo>, ApiError> {
    let member = authenticate(&st.shared, &headers)?;
    tracing::debug!(user = %member.id(), "session bootstrap");
    Ok(Json(st.shared.session_info(&member)))
}

async fn space_location(
    State(st): State<DirectoryState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SpaceLocation>, ApiError> {
    authenticate(&st.shared, &headers)?;
    let Path(raw) = path.map_err(|e| ApiError::invalid(e.body_text()))?;
    let id = SpaceId::new(raw).map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut location = st
        .shared
        .space(&id)
        .map(|s| s.location)
        .ok_or_else(|| ApiError::not_found(format!("space {id}")))?;
    if let Some(region) = lock(&st.misdirected).get(&id) {
        location.region = region.clone();
    }
    Ok(Json(location))
}

async fn user_location(
    State(st): State<DirectoryState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserLocation>, ApiError> {
    authenticate(&st.shared, &headers)?;
    let Path(raw) = path.map_err(|e| ApiError::invalid(e.body_text()))?;
    let id = UserId::new(raw).map_err(|e| ApiError::invalid(e.to_string()))?;
    st.shared
        .user_location(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))
}

/// `POST /v1/dev/tokens`
#[derive(Deserialize)]
struct MintRequest {
    user: UserId,
    ttl_ms: u64,
}

/// The answer to `POST /v1/dev/tokens`.
#[derive(Serialize)]
struct MintReply {
    token: String,
    expires_at_ms: u64,
}

async fn mint_token(
    State(st): State<DirectoryState>,
    body: Result<Json<MintRequest>, JsonRejection>,
) -> Result<Json<MintReply>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    match st.shared.mint_token(&req.user, req.ttl_ms) {
        Ok((token, expires_at_ms)) => Ok(Json(MintReply {
            token,
            expires_at_ms,
        })),
        Err(DevserverError::UnknownUser(user)) => Err(ApiError::not_found(format!("user {user}"))),
        Err(DevserverError::InvalidInput(why)) => Err(ApiError::invalid(why)),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("internal error: {e}"),
        )),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such directory endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidInput,
        "invalid input: method not allowed on this endpoint",
    )
}

/// Resolves `Authorization: Bearer <token>` to a user.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Member, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed authorization header"))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
    shared
        .member_by_token(token)
        .map_err(|refusal| ApiError::unauthorized(refusal.why()))
}

async fn faults(State(st): State<DirectoryState>, req: Request, next: Next) -> Response {
    // The dev controls are how tests drive the federation, not the directory under test.
    let fault = if req.uri().path().starts_with("/v1/dev/") {
        None
    } else {
        *lock(&st.fault)
    };
    match fault {
        None => next.run(req).await,
        Some(DirectoryFault::Status500) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error: injected directory fault",
        )
        .into_response(),
        Some(DirectoryFault::Garbage) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "<html>this is not the federation you are looking for",
        )
            .into_response(),
    }
}

/// Lets the web demo (another origin) call the directory from a browser.
async fn cors(req: Request, next: Next) -> Response {
    let mut res = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, traceparent"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    res
}
