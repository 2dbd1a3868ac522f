//! Advertised socket URLs: the federation document can point clients at a proxy in front
//! of a region; every change bumps the document's version.

use meridian::model::FederationDoc;

use crate::support::{TcpProxy, connect, federation, region, token};

async fn doc(directory: &str) -> FederationDoc {
    let signed: meridian::model::SignedFederationDoc =
        reqwest::get(format!("{directory}/v1/federation"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let doc: FederationDoc = serde_json::from_str(&signed.document).unwrap();
    doc.validate().unwrap();
    doc
}

#[tokio::test]
async fn an_advertised_url_replaces_the_real_one_in_the_document_and_bumps_its_version() {
    let fed = federation().await;
    let dir = fed.directory_url();
    let eu = region("eu-west");
    let real = fed.region_socket_url(&eu).unwrap();
    let addr = fed.region_addr(&eu).unwrap();
    assert_eq!(real, format!("ws://{addr}"));
    assert!(addr.ip().is_loopback());

    let v1 = doc(&dir).await;
    assert_eq!(v1.region(&eu).unwrap().socket_url, real);

    let proxy = TcpProxy::start(addr).await;
    let proxied = format!("ws://{}", proxy.addr);
    fed.advertise_region(&eu, Some(proxied.clone())).unwrap();
    let v2 = doc(&dir).await;
    assert!(v2.version > v1.version);
    assert_eq!(v2.region(&eu).unwrap().socket_url, proxied);
    // The other regions, and the real URL for in-process callers, are unchanged.
    assert_eq!(
        v2.region(&region("us-east")).unwrap().socket_url,
        fed.region_socket_url(&region("us-east")).unwrap()
    );
    assert_eq!(fed.region_socket_url(&eu).unwrap(), real);

    // A client that follows the document goes through the proxy.
    let mut ana = connect(&v2.region(&eu).unwrap().socket_url, &token("ana"))
        .await
        .unwrap();
    ana.join("acme:general").await;
    assert_eq!(proxy.accepted.load(std::sync::atomic::Ordering::Relaxed), 1);

    // Saying the same thing again is no change.
    fed.advertise_region(&eu, Some(proxied.clone())).unwrap();
    assert_eq!(doc(&dir).await.version, v2.version);
    // A restart on the same port is no change either.
    fed.restart_region(&eu).await.unwrap();
    assert_eq!(doc(&dir).await.version, v2.version);

    fed.advertise_region(&eu, None).unwrap();
    let v3 = doc(&dir).await;
    assert!(v3.version > v2.version);
    assert_eq!(v3.region(&eu).unwrap().socket_url, real);
    fed.advertise_region(&eu, None).unwrap();
    assert_eq!(doc(&dir).await.version, v3.version);

    assert!(fed.advertise_region(&eu, Some("http://x".into())).is_err());
    assert!(fed.advertise_region(&eu, Some("ws://".into())).is_err());
    assert!(
        fed.advertise_region(&region("mars"), Some(proxied))
            .is_err()
    );
    assert!(fed.region_addr(&region("mars")).is_none());
    assert_eq!(doc(&dir).await.version, v3.version);
    fed.shutdown().await;
}
