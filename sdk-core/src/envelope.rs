//! Sealed payloads: what keeps a message body unreadable in transit outside the regions a
//! data-sovereignty (DS) policy permits.
//!
//! Owns: sealing and opening with HPKE (RFC 9180) in base mode with DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256 and ChaCha20Poly1305, the associated data that binds a payload
//! to its space, message and region (so it can't be replayed into another), and the key
//! pairs (private halves zeroized on drop). Must never log a key or a plaintext, and never
//! hand out plaintext from a payload that failed its check.

use base64ct::{Base64, Encoding as _};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::{RegionId, SpaceId};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// The HPKE suite, named on the wire so it can change one day without ambiguity.
pub const SUITE: &str = "hpke-base-x25519-sha256-chacha20poly1305";

/// HPKE `info`: separates Meridian's payloads from any other use of the same keys.
const INFO: &[u8] = b"meridian/v1 sealed payload";

/// A public key payloads are sealed to (a region's, or a client's).
#[derive(Clone, PartialEq, Eq)]
pub struct SealingKey(<Kem as hpke::Kem>::PublicKey);

impl SealingKey {
    /// Reads a key from its base64 form (as the federation document publishes it).
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = Base64::decode_vec(text.trim())
            .map_err(|_| Error::Integrity("a sealing key is not valid base64".into()))?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| Error::Integrity("a sealing key is not an X25519 public key".into()))
    }

    /// The key in base64.
    pub fn to_base64(&self) -> String {
        Base64::encode_string(&self.0.to_bytes())
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingKey({})", self.to_base64())
    }
}

impl Serialize for SealingKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for SealingKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// A key pair: the public half to publish, the private half to open with. The private
/// half is wiped from memory when dropped and never shown by `Debug`.
pub struct KeyPair {
    public: SealingKey,
    private: <Kem as hpke::Kem>::PrivateKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl KeyPair {
    /// A fresh key pair from the platform's secure random source.
    pub fn generate() -> Self {
        let (private, public) = Kem::gen_keypair();
        Self {
            public: SealingKey(public),
            private,
        }
    }

    /// The key pair RFC 9180's `DeriveKeyPair` makes from `ikm` (test vectors, and keys
    /// derived from a secret kept elsewhere).
    pub fn derive(ikm: &[u8]) -> Self {
        let (private, public) = Kem::derive_keypair(ikm);
        Self {
            public: SealingKey(public),
            private,
        }
    }

    /// The public half.
    pub fn public(&self) -> &SealingKey {
        &self.public
    }

    /// The private half's bytes, for a store (wiped when the returned buffer is dropped).
    pub fn private_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.private.to_bytes().to_vec())
    }

    /// A key pair from the private half's bytes.
    pub fn from_private_bytes(bytes: &[u8]) -> Result<Self> {
        let private = <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| Error::Integrity("stored private key is not an X25519 key".into()))?;
        let public = SealingKey(Kem::sk_to_pk(&private));
        Ok(Self { public, private })
    }
}

/// What a sealed payload belongs to. Opening it with any other binding fails, so a payload
/// captured in one space, for one message, or for one region can't be replayed elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The space.
    pub space: &'a SpaceId,
    /// The message: the region's message id, or the client's idempotency key before the
    /// region has assigned one.
    pub message: &'a str,
    /// The region the payload is sealed for (its own key) or comes from.
    pub region: &'a RegionId,
}

impl Binding<'_> {
    /// The HPKE associated data: every field length-prefixed, so no two bindings share one.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"meridian/v1");
        for part in [self.space.as_str(), self.message, self.region.as_str()] {
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// A payload only the holder of one private key can read. There is no way to turn it
/// into text without [`open`]: it can't be sent or logged as plaintext by mistake.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPayload {
    /// The HPKE suite ([`SUITE`]).
    pub suite: String,
    /// The encapsulated key (base64).
    pub enc: String,
    /// The ciphertext with its tag (base64).
    pub ct: String,
}

crate::json::struct_from_json!(SealedPayload { suite, enc, ct });

impl crate::json::ToJson for SealedPayload {
    fn to_json(&self, w: &mut crate::json::ObjectWriter<'_>) {
        w.str("suite", &self.suite)
            .str("enc", &self.enc)
            .str("ct", &self.ct);
    }
}

impl std::fmt::Debug for SealedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedPayload(<{} bytes>)", self.ct.len())
    }
}

/// Seals `plaintext` to `to`, bound to `binding`.
pub fn seal(to: &SealingKey, binding: &Binding<'_>, plaintext: &[u8]) -> Result<SealedPayload> {
    let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &to.0,
        INFO,
        plaintext,
        &binding.aad(),
    )
    .map_err(|e| Error::Internal(format!("sealing failed: {e}")))?;
    Ok(SealedPayload {
        suite: SUITE.into(),
        enc: Base64::encode_string(&enc.to_bytes()),
        ct: Base64::encode_string(&ct),
    })
}

/// Opens a payload sealed to `key`'s public half with the same `binding`. Any change to the
/// payload, another binding, or another key fails with [`Error::Integrity`].
pub fn open(key: &KeyPair, binding: &Binding<'_>, sealed: &SealedPayload) -> Result<Vec<u8>> {
    let refuse = |why: &str| Error::Integrity(format!("sealed payload refused: {why}"));
    if sealed.suite != SUITE {
        return Err(refuse("unknown suite"));
    }
    let enc = Base64::decode_vec(&sealed.enc).map_err(|_| refuse("bad encoding"))?;
    let ct = Base64::decode_vec(&sealed.ct).map_err(|_| refuse("bad encoding"))?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|_| refuse("bad key"))?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &key.private,
        &enc,
        INFO,
        &ct,
        &binding.aad(),
    )
    .map_err(|_| refuse("it was altered, sealed to another key, or belongs elsewhere"))
}

#[cfg(test)]
mod tests {
    use meridian_test_macros::meridian_test;
    use std::convert::Infallible;

    use hpke::rand_core::{TryCryptoRng, TryRng};

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 9180, Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305,
    // base mode.
    const INFO_A21: &str = "4f6465206f6e2061204772656369616e2055726e";
    const IKM_E: &str = "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b";
    const PK_EM: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
    const IKM_R: &str = "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df";
    const PK_RM: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
    const SK_RM: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
    const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
    /// (aad, ct) for sequence numbers 0, 1, 2.
    const ENCRYPTIONS: [(&str, &str); 3] = [
        (
            "436f756e742d30",
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        ),
        (
            "436f756e742d31",
            "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e85285337cc95ba5f59992dc98c",
        ),
        (
            "436f756e742d32",
            "71146bd6795ccc9c49ce25dda112a48f202ad220559502cef1f34271e0cb4b02b4f10ecac6f48c32f878fae86b",
        ),
    ];

    /// Hands out fixed bytes: makes the sender's ephemeral key the vector's.
    struct FixedRng(Vec<u8>);
    impl TryRng for FixedRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
            unreachable!("only fill_bytes is used")
        }
        fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
            unreachable!("only fill_bytes is used")
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Infallible> {
            let n = dst.len();
            dst.copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(())
        }
    }
    impl TryCryptoRng for FixedRng {}

    #[meridian_test]
    fn the_rfc_9180_base_mode_vector_opens_and_seals_byte_for_byte() {
        let recipient = KeyPair::derive(&hex(IKM_R));
        assert_eq!(recipient.public().0.to_bytes().to_vec(), hex(PK_RM));
        // The crate keeps the scalar clamped (RFC 7748 §5): the same X25519 key.
        let mut clamped = hex(SK_RM);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        assert_eq!(recipient.private_bytes().to_vec(), clamped);

        // Receiver: open the published ciphertexts in sequence.
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&hex(PK_EM)).unwrap();
        let mut ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &recipient.private,
            &enc,
            &hex(INFO_A21),
        )
        .unwrap();
        for (aad, ct) in ENCRYPTIONS {
            assert_eq!(ctx.open(&hex(ct), &hex(aad)).unwrap(), hex(PT));
        }

        // Sender: with the vector's ephemeral key, the same bytes come out.
        let (enc, mut ctx) = hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &recipient.public().0,
            &hex(INFO_A21),
            &mut FixedRng(hex(IKM_E)),
        )
        .unwrap();
        assert_eq!(enc.to_bytes().to_vec(), hex(PK_EM));
        for (aad, ct) in ENCRYPTIONS {
            assert_eq!(ctx.seal(&hex(PT), &hex(aad)).unwrap(), hex(ct));
        }
    }

    fn ids() -> (SpaceId, RegionId) {
        (
            SpaceId::new_unchecked("maple:lounge"),
            RegionId::new_unchecked("ca-central"),
        )
    }

    #[meridian_test]
    fn a_payload_opens_only_with_its_key_and_its_binding() {
        let (space, region) = ids();
        let region_key = KeyPair::generate();
        let binding = Binding {
            space: &space,
            message: "k1",
            region: &region,
        };
        let sealed = seal(region_key.public(), &binding, b"hello").unwrap();
        assert!(!format!("{sealed:?}").contains("hello"));
        assert_eq!(open(&region_key, &binding, &sealed).unwrap(), b"hello");

        let other_space = SpaceId::new_unchecked("maple:other");
        let other_region = RegionId::new_unchecked("us-east");
        let wrong = [
            Binding {
                space: &other_space,
                ..binding
            },
            Binding {
                message: "k2",
                ..binding
            },
            Binding {
                region: &other_region,
                ..binding
            },
        ];
        for b in wrong {
            let err = open(&region_key, &b, &sealed).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::Integrity, "{b:?}");
        }
        let stranger = KeyPair::generate();
        assert!(open(&stranger, &binding, &sealed).is_err(), "another key");
    }

    #[meridian_test]
    fn a_tampered_payload_is_refused() {
        let (space, region) = ids();
        let key = KeyPair::generate();
        let binding = Binding {
            space: &space,
            message: "m",
            region: &region,
        };
        let sealed = seal(key.public(), &binding, b"hello").unwrap();
        let mut ct = Base64::decode_vec(&sealed.ct).unwrap();
        ct[0] ^= 1;
        let tampered = SealedPayload {
            ct: Base64::encode_string(&ct),
            ..sealed.clone()
        };
        for bad in [
            tampered,
            SealedPayload {
                enc: "not base64!".into(),
                ..sealed.clone()
            },
            SealedPayload {
                suite: "rot13".into(),
                ..sealed.clone()
            },
        ] {
            assert_eq!(
                open(&key, &binding, &bad).unwrap_err().code(),
                crate::ErrorCode::Integrity
            );
        }
    }

    #[meridian_test]
    fn a_key_pair_survives_a_round_trip_through_its_bytes_and_keys_through_base64() {
        let key = KeyPair::generate();
        let again = KeyPair::from_private_bytes(&key.private_bytes()).unwrap();
        assert_eq!(again.public(), key.public());
        let text = key.public().to_base64();
        assert_eq!(&SealingKey::from_base64(&text).unwrap(), key.public());
        assert!(SealingKey::from_base64("AAAA").is_err());
        assert!(!format!("{key:?}").contains(&Base64::encode_string(&key.private_bytes())));
    }
}
