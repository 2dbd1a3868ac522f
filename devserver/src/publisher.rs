//! The signed federation document: what `GET /v1/federation` serves.
//!
//! Owns: the federation's signing key (and the next one during a rotation), the signed
//! document of the current version (one document per version, byte for byte, as clients
//! require), re-issuing it under a new version before it expires, and the document faults
//! tests use to prove clients refuse what they must. Must never sign two different
//! documents under one version, and never log a signing key.

use std::sync::Mutex;
use std::time::Duration;

use meridian::model::{FederationDoc, FederationKey, SignedFederationDoc};
use meridian::trust::DocumentSigner;

use crate::state::{lock, now_ms};

/// A way the directory can misbehave about its document, for adversarial tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFault {
    /// Signed by a key nobody trusts, under the real key's id.
    Forged,
    /// Signed properly, then altered (a region's URL swapped).
    Tampered,
    /// Signed properly, but already expired.
    Expired,
    /// The first document this directory ever served (an older version, properly signed).
    Rollback,
}

struct Issued {
    /// What the document said, without its dates: a change means a new version.
    content: String,
    signed: SignedFederationDoc,
    expires_at_ms: u64,
    signer_id: String,
}

struct Keys {
    current: DocumentSigner,
    next: Option<DocumentSigner>,
    rotations: u32,
}

/// Signs and serves the federation document.
pub(crate) struct Publisher {
    keys: Mutex<Keys>,
    issued: Mutex<Option<Issued>>,
    first: Mutex<Option<SignedFederationDoc>>,
    fault: Mutex<Option<DocumentFault>>,
    version: Mutex<u64>,
    ttl: Duration,
}

impl Publisher {
    pub(crate) fn new(signer: DocumentSigner, ttl: Duration) -> Self {
        Self {
            keys: Mutex::new(Keys {
                current: signer,
                next: None,
                rotations: 0,
            }),
            issued: Mutex::new(None),
            first: Mutex::new(None),
            fault: Mutex::new(None),
            version: Mutex::new(0),
            ttl,
        }
    }

    /// The keys clients should pin: the current signing key.
    pub(crate) fn trust_anchors(&self) -> Vec<FederationKey> {
        vec![lock(&self.keys).current.public()]
    }

    pub(crate) fn set_fault(&self, fault: Option<DocumentFault>) {
        *lock(&self.fault) = fault;
    }

    /// Starts a rotation: the next document, still signed by the current key, announces a
    /// new key. [`Self::finish_rotation`] then signs with it.
    pub(crate) fn begin_rotation(&self) -> Result<FederationKey, meridian::Error> {
        let mut keys = lock(&self.keys);
        keys.rotations += 1;
        let next = DocumentSigner::generate(format!("federation-{}", keys.rotations))?;
        let public = next.public();
        keys.next = Some(next);
        *lock(&self.issued) = None;
        Ok(public)
    }

    /// Ends a rotation: documents are signed by the announced key from now on.
    pub(crate) fn finish_rotation(&self) {
        let mut keys = lock(&self.keys);
        if let Some(next) = keys.next.take() {
            keys.current = next;
        }
        *lock(&self.issued) = None;
    }

    /// The document to serve now, signed.
    pub(crate) fn serve(&self, unsigned: FederationDoc) -> SignedFederationDoc {
        let fault = *lock(&self.fault);
        let signed = self.current(unsigned.clone());
        match fault {
            None => signed,
            Some(DocumentFault::Forged) => {
                let id = lock(&self.keys).current.public().id;
                match DocumentSigner::generate(id) {
                    Ok(forger) => forger.sign(&self.dated(unsigned, now_ms())),
                    Err(_) => tamper(signed),
                }
            }
            Some(DocumentFault::Tampered) => tamper(signed),
            Some(DocumentFault::Expired) => {
                let mut doc = self.dated(unsigned, now_ms().saturating_sub(7_200_000));
                doc.version = *lock(&self.version) + 1;
                lock(&self.keys).current.sign(&doc)
            }
            Some(DocumentFault::Rollback) => lock(&self.first).clone().unwrap_or(signed),
        }
    }

    fn dated(&self, mut doc: FederationDoc, issued_at_ms: u64) -> FederationDoc {
        doc.issued_at_ms = issued_at_ms;
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        doc.expires_at_ms = issued_at_ms.saturating_add(ttl);
        doc
    }

    /// The signed document of the current version; a new version when the content, the
    /// signing key or the announced key changed, or when half the lifetime has passed.
    fn current(&self, mut doc: FederationDoc) -> SignedFederationDoc {
        let keys = lock(&self.keys);
        doc.next_signing_keys = keys.next.iter().map(DocumentSigner::public).collect();
        // What the document says, without its version and dates.
        doc.version = 0;
        doc.issued_at_ms = 0;
        doc.expires_at_ms = 0;
        let content = serde_json::to_string(&doc).unwrap_or_default();
        let now = now_ms();
        let half_life = u64::try_from(self.ttl.as_millis() / 2).unwrap_or(u64::MAX);
        let mut issued = lock(&self.issued);
        if let Some(i) = issued.as_ref()
            && i.content == content
            && i.signer_id == keys.current.public().id
            && now.saturating_add(half_life) < i.expires_at_ms
        {
            return i.signed.clone();
        }
        let mut version = lock(&self.version);
        *version += 1;
        let mut doc = self.dated(doc, now);
        doc.version = *version;
        let signed = keys.current.sign(&doc);
        lock(&self.first).get_or_insert_with(|| signed.clone());
        tracing::debug!(version = doc.version, key = %keys.current.public().id, "federation document issued");
        *issued = Some(Issued {
            content,
            signed: signed.clone(),
            expires_at_ms: doc.expires_at_ms,
            signer_id: keys.current.public().id,
        });
        signed
    }
}

fn tamper(mut signed: SignedFederationDoc) -> SignedFederationDoc {
    signed.document = signed
        .document
        .replacen("ws://127.0.0.1:", "ws://127.0.0.2:", 1);
    signed
}
