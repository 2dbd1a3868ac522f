//! Federation trust: which federation documents the client believes.
//!
//! Owns: signing a document (the directory's side) and verifying one (the client's side)
//! against the keys the app pinned, plus the keys a verified document announces for
//! rotation; refusing a document that is expired, older than the one held (rollback), or a
//! different document under the same version. Must never accept a document it could not
//! verify, and never let a refused document replace the last good one.

use base64ct::{Base64, Encoding as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::error::{Error, Result};
use crate::model::{FederationDoc, FederationKey, SignedFederationDoc};

/// Prefixed to the document bytes before signing, so a federation signature can never be
/// mistaken for a signature over anything else.
pub const CONTEXT: &[u8] = b"meridian/v1 federation document\n";

/// The directory's signing key. The private half is wiped when dropped.
pub struct DocumentSigner {
    id: String,
    key: SigningKey,
}

impl std::fmt::Debug for DocumentSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentSigner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DocumentSigner {
    /// A signer from a 32-byte seed (the ed25519 secret key).
    pub fn from_seed(id: impl Into<String>, seed: &[u8; 32]) -> Self {
        Self {
            id: id.into(),
            key: SigningKey::from_bytes(seed),
        }
    }

    /// A signer with a fresh key from the platform's secure random source.
    pub fn generate(id: impl Into<String>) -> Result<Self> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| Error::Internal(format!("no secure random source: {e}")))?;
        Ok(Self::from_seed(id, &seed))
    }

    /// The public key clients pin (or learn through rotation).
    pub fn public(&self) -> FederationKey {
        FederationKey {
            id: self.id.clone(),
            public_key: Base64::encode_string(self.key.verifying_key().as_bytes()),
        }
    }

    /// Signs a document.
    pub fn sign(&self, doc: &FederationDoc) -> SignedFederationDoc {
        // Plain data with string keys: serializing cannot fail.
        let document = serde_json::to_string(doc).unwrap_or_default();
        let signature = self.key.sign(&signed_bytes(&document));
        SignedFederationDoc {
            document,
            key_id: self.id.clone(),
            signature: Base64::encode_string(&signature.to_bytes()),
        }
    }
}

fn signed_bytes(document: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CONTEXT.len() + document.len());
    bytes.extend_from_slice(CONTEXT);
    bytes.extend_from_slice(document.as_bytes());
    bytes
}

fn parse_key(key: &FederationKey) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = Base64::decode_vec(key.public_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "federation key {} is not 32 bytes of base64",
                key.id
            ))
        })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| {
        Error::InvalidInput(format!("federation key {} is not an ed25519 key", key.id))
    })
}

/// What the client believes: the pinned keys, the keys the last verified document
/// announced, and the last verified document's version.
#[derive(Debug)]
pub struct Trust {
    pinned: Vec<(String, VerifyingKey)>,
    announced: Vec<(String, VerifyingKey)>,
    /// The key that signed the document held: it stays trusted after a rotation.
    current: Option<(String, VerifyingKey)>,
    held: Option<(u64, String)>,
}

impl Trust {
    /// Trusts documents signed by `pinned` (at least one key).
    pub fn new(pinned: &[FederationKey]) -> Result<Self> {
        if pinned.is_empty() {
            return Err(Error::InvalidInput(
                "pin at least one federation key: documents can't be trusted otherwise".into(),
            ));
        }
        let pinned = pinned
            .iter()
            .map(|k| parse_key(k).map(|v| (k.id.clone(), v)))
            .collect::<Result<_>>()?;
        Ok(Self {
            pinned,
            announced: Vec::new(),
            current: None,
            held: None,
        })
    }

    /// Verifies a signed document at wall-clock time `now_ms`. On success the document
    /// becomes the one held and its announced keys are trusted for the next; on failure
    /// nothing changes and the error says why ([`Error::Integrity`]).
    pub fn accept(&mut self, signed: &SignedFederationDoc, now_ms: u64) -> Result<FederationDoc> {
        let refuse = |why: String| {
            Err(Error::Integrity(format!(
                "federation document refused: {why}"
            )))
        };
        let Some((_, key)) = self
            .pinned
            .iter()
            .chain(&self.announced)
            .chain(&self.current)
            .find(|(id, _)| *id == signed.key_id)
        else {
            return refuse(format!(
                "signed by unknown key \"{}\"",
                signed.key_id.escape_default()
            ));
        };
        let signature = Base64::decode_vec(&signed.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok());
        let Some(signature) = signature else {
            return refuse("the signature is malformed".into());
        };
        if key
            .verify_strict(&signed_bytes(&signed.document), &signature)
            .is_err()
        {
            return refuse("the signature does not match".into());
        }
        let doc: FederationDoc = match crate::json::from_str(&signed.document) {
            Ok(doc) => doc,
            Err(e) => return refuse(format!("the signed document does not parse: {e}")),
        };
        doc.validate()?;
        if doc.expires_at_ms <= now_ms {
            return refuse(format!(
                "it expired at {} (now {now_ms})",
                doc.expires_at_ms
            ));
        }
        if let Some((version, document)) = &self.held {
            if doc.version < *version {
                return refuse(format!(
                    "version {} is older than version {version} already held (rollback)",
                    doc.version
                ));
            }
            if doc.version == *version && *document != signed.document {
                return refuse(format!(
                    "a different document also claims version {version}"
                ));
            }
        }
        let announced = doc
            .next_signing_keys
            .iter()
            .map(|k| parse_key(k).map(|v| (k.id.clone(), v)))
            .collect::<Result<Vec<_>>>();
        let Ok(announced) = announced else {
            return refuse("it announces a malformed next signing key".into());
        };
        self.current = Some((signed.key_id.clone(), *key));
        self.announced = announced;
        self.held = Some((doc.version, signed.document.clone()));
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Region, RegionId};
    use meridian_test_macros::meridian_test;

    fn doc(version: u64, expires_at_ms: u64, next: Vec<FederationKey>) -> FederationDoc {
        FederationDoc {
            version,
            issued_at_ms: 0,
            regions: vec![Region {
                id: RegionId::new_unchecked("eu-west"),
                name: "EU".into(),
                socket_url: "ws://127.0.0.1:1".into(),
                public_key: None,
            }],
            policies: vec![],
            flavors: vec![],
            expires_at_ms,
            next_signing_keys: next,
        }
    }

    fn signer(id: &str, byte: u8) -> DocumentSigner {
        DocumentSigner::from_seed(id, &[byte; 32])
    }

    #[meridian_test]
    fn a_document_signed_by_a_pinned_key_is_accepted() {
        let root = signer("root", 1);
        let mut trust = Trust::new(&[root.public()]).unwrap();
        let got = trust.accept(&root.sign(&doc(1, 100, vec![])), 50).unwrap();
        assert_eq!(got.version, 1);
    }

    #[meridian_test]
    fn forged_tampered_unknown_expired_and_rolled_back_documents_are_refused() {
        let root = signer("root", 1);
        let mut trust = Trust::new(&[root.public()]).unwrap();
        trust.accept(&root.sign(&doc(5, 100, vec![])), 50).unwrap();

        let mut tampered = root.sign(&doc(6, 100, vec![]));
        tampered.document = tampered.document.replace("eu-west", "us-east");
        let mut forged = signer("root", 2).sign(&doc(6, 100, vec![]));
        forged.key_id = "root".into();
        let mut garbled = root.sign(&doc(6, 100, vec![]));
        garbled.signature = "!!".into();
        let mut same_version = root.sign(&doc(5, 100, vec![]));
        same_version.document = root.sign(&doc(5, 99, vec![])).document;
        let cases = [
            ("tampered", tampered),
            ("forged", forged),
            ("garbled", garbled),
            (
                "unknown key",
                signer("stranger", 3).sign(&doc(6, 100, vec![])),
            ),
            ("expired", root.sign(&doc(6, 40, vec![]))),
            ("rolled back", root.sign(&doc(4, 100, vec![]))),
            ("same version, other content", same_version),
        ];
        for (what, signed) in cases {
            let err = trust.accept(&signed, 50).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::Integrity, "{what}: {err}");
        }
        // Nothing refused replaced what is held.
        assert!(trust.accept(&root.sign(&doc(5, 100, vec![])), 50).is_ok());
    }

    #[meridian_test]
    fn a_key_announced_by_a_verified_document_signs_the_next_one() {
        let root = signer("root", 1);
        let next = signer("next", 9);
        let mut trust = Trust::new(&[root.public()]).unwrap();
        assert!(
            trust.accept(&next.sign(&doc(2, 100, vec![])), 50).is_err(),
            "not yet announced"
        );
        trust
            .accept(&root.sign(&doc(2, 100, vec![next.public()])), 50)
            .unwrap();
        assert_eq!(
            trust
                .accept(&next.sign(&doc(3, 100, vec![])), 50)
                .unwrap()
                .version,
            3
        );
    }

    #[meridian_test]
    fn a_rotated_key_keeps_signing_after_its_announcement_is_gone() {
        let root = signer("root", 1);
        let next = signer("next", 9);
        let mut trust = Trust::new(&[root.public()]).unwrap();
        trust
            .accept(&root.sign(&doc(1, 100, vec![next.public()])), 50)
            .unwrap();
        for version in 2..5 {
            let got = trust.accept(&next.sign(&doc(version, 100, vec![])), 50);
            assert_eq!(got.unwrap().version, version);
        }
    }

    #[meridian_test]
    fn pinning_nothing_or_garbage_is_refused() {
        assert!(Trust::new(&[]).is_err());
        let bad = FederationKey {
            id: "x".into(),
            public_key: "AAAA".into(),
        };
        assert_eq!(
            Trust::new(&[bad]).unwrap_err().code(),
            crate::ErrorCode::InvalidInput
        );
    }
}
