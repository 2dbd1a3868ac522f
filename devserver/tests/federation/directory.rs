//! The directory's HTTP API.

use devserver::DirectoryFault;
use meridian::ErrorCode;
use meridian::model::{
    FederationDoc, Residency, SessionInfo, SpaceKind, SpaceLocation, UserLocation,
};
use meridian::protocol::ErrorBody;
use reqwest::StatusCode;

use crate::support::{federation, region, token};

async fn get(url: String, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn error_of(res: reqwest::Response, status: StatusCode) -> ErrorBody {
    assert_eq!(res.status(), status);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_federation_document_validates_and_points_at_every_region() {
    let fed = federation().await;
    let res = get(format!("{}/v1/federation", fed.directory_url()), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let signed: meridian::model::SignedFederationDoc = res.json().await.unwrap();
    // Signed by the key clients pin, and verifiable as such.
    let mut trust = meridian::trust::Trust::new(&fed.federation_keys()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let doc: FederationDoc = trust.accept(&signed, now).unwrap();
    assert!(doc.expires_at_ms > now);
    assert_eq!(doc.version, 1);
    assert!(doc.issued_at_ms > 0);
    assert_eq!(doc.regions.len(), 3);
    for r in &doc.regions {
        assert_eq!(Some(r.socket_url.clone()), fed.region_socket_url(&r.id));
        assert!(
            r.socket_url.starts_with("ws://127.0.0.1:"),
            "{}",
            r.socket_url
        );
    }
    assert_eq!(
        doc.region(&region("ca-central")).unwrap().name,
        "Canada (Montréal)"
    );
    assert_eq!(doc.policies.len(), 3);
    assert_eq!(doc.flavors.len(), 3);
    fed.shutdown().await;
}

#[tokio::test]
async fn a_session_bootstrap_names_the_user_their_company_and_their_flavor() {
    let fed = federation().await;
    let session = |user: &'static str| {
        let url = format!("{}/v1/session", fed.directory_url());
        async move {
            let res = reqwest::Client::new()
                .post(url)
                .bearer_auth(token(user))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<SessionInfo>().await.unwrap()
        }
    };
    let ana = session("ana").await;
    assert_eq!(ana.user.as_str(), "ana");
    assert_eq!(ana.company.as_str(), "acme");
    assert_eq!(ana.home_region.as_str(), "eu-west");
    assert_eq!(ana.policy.as_str(), "eu-strict");
    assert_eq!(ana.flavor.unwrap().as_str(), "eu");
    // leo's beta override wins over his company's flavor; chloe gets the company's.
    assert_eq!(session("leo").await.flavor.unwrap().as_str(), "ca-beta");
    assert_eq!(session("chloe").await.flavor.unwrap().as_str(), "na");
    fed.shutdown().await;
}

#[tokio::test]
async fn a_missing_malformed_or_unknown_token_is_refused_with_401() {
    let fed = federation().await;
    let url = format!("{}/v1/session", fed.directory_url());
    let client = reqwest::Client::new();
    for req in [
        client.post(&url),
        client.post(&url).bearer_auth("nobody-token"),
        client
            .post(&url)
            .header("authorization", "Basic YW5hOmFuYQ=="),
        client.post(&url).header("authorization", "Bearer "),
    ] {
        let res = req.send().await.unwrap();
        let body = error_of(res, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body.code, ErrorCode::Unauthorized);
        assert!(body.message.starts_with("unauthorized"), "{}", body.message);
    }
    let res = get(
        format!("{}/v1/spaces/acme:general/location", fed.directory_url()),
        None,
    )
    .await;
    assert_eq!(
        error_of(res, StatusCode::UNAUTHORIZED).await.code,
        ErrorCode::Unauthorized
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn spaces_and_users_are_located_in_their_company_home_region() {
    let fed = federation().await;
    let base = fed.directory_url();
    let res = get(
        format!("{base}/v1/spaces/acme:general/location"),
        Some("sam-token"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let loc: SpaceLocation = res.json().await.unwrap();
    assert_eq!(loc.region.as_str(), "eu-west");
    assert_eq!(loc.company.as_str(), "acme");
    assert_eq!(loc.kind, SpaceKind::Channel);
    assert_eq!(loc.residency, Residency::Dr);

    let res = get(
        format!("{base}/v1/spaces/maple:lounge/location"),
        Some("ana-token"),
    )
    .await;
    let loc: SpaceLocation = res.json().await.unwrap();
    assert_eq!(loc.region.as_str(), "ca-central");
    assert_eq!(loc.residency, Residency::Ds);

    let res = get(format!("{base}/v1/users/sam/location"), Some("ana-token")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let user: UserLocation = res.json().await.unwrap();
    assert_eq!(user.home_region.as_str(), "us-east");
    assert_eq!(user.policy.as_str(), "us-open");
    fed.shutdown().await;
}

#[tokio::test]
async fn unknown_and_invalid_ids_get_typed_404_and_400_errors() {
    let fed = federation().await;
    let base = fed.directory_url();
    for path in [
        "/v1/spaces/nope/location",
        "/v1/users/nobody/location",
        "/v1/nothing-here",
    ] {
        let res = get(format!("{base}{path}"), Some("ana-token")).await;
        let body = error_of(res, StatusCode::NOT_FOUND).await;
        assert_eq!(body.code, ErrorCode::NotFound, "{path}");
    }
    for path in [
        "/v1/spaces/bad%20id/location",
        "/v1/users/%F0%9F%92%A9/location",
        "/v1/spaces/%FF%FE/location",
    ] {
        let res = get(format!("{base}{path}"), Some("ana-token")).await;
        let body = error_of(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(body.code, ErrorCode::InvalidInput, "{path}");
    }
    let long = "x".repeat(10_000);
    let res = get(
        format!("{base}/v1/spaces/{long}/location"),
        Some("ana-token"),
    )
    .await;
    assert_eq!(
        error_of(res, StatusCode::BAD_REQUEST).await.code,
        ErrorCode::InvalidInput
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn an_injected_directory_fault_is_served_until_cleared() {
    let fed = federation().await;
    let url = format!("{}/v1/federation", fed.directory_url());

    fed.set_directory_fault(Some(DirectoryFault::Status500));
    let body = error_of(
        get(url.clone(), None).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert_eq!(body.code, ErrorCode::Internal);

    fed.set_directory_fault(Some(DirectoryFault::Garbage));
    let res = get(url.clone(), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );

    fed.set_directory_fault(None);
    let signed: meridian::model::SignedFederationDoc = get(url, None).await.json().await.unwrap();
    let doc: FederationDoc = serde_json::from_str(&signed.document).unwrap();
    doc.validate().unwrap();
    fed.shutdown().await;
}

#[tokio::test]
async fn a_browser_preflight_is_allowed() {
    let fed = federation().await;
    let res = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/session", fed.directory_url()),
        )
        .header("origin", "http://localhost:8080")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    fed.shutdown().await;
}
