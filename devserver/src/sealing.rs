//! A region's side of sealed payloads (data sovereignty, DS).
//!
//! Owns: the client's sealing key as a socket carries it (from the CONNECT auth payload);
//! opening a sealed send with the region's private key, bound to (space, idempotency key,
//! this region); sealing a stored message to one client's key, bound to (space, message id,
//! this region), for each delivery of a DS space; and the errors a region answers when a
//! payload fails its check or a DS space is asked for plaintext.
//! Must never hand out plaintext from a payload that failed its check, never put a DS
//! space's text in the clear on a socket, and never log a key or a plaintext.

use meridian::envelope::{self, Binding, KeyPair, SealedPayload, SealingKey};
use meridian::model::{Message, RegionId, SpaceId};
use meridian::protocol::ErrorBody;

/// The client's sealing key, as a socket's extension (set at connect when the auth payload
/// carried one).
#[derive(Clone)]
pub(crate) struct ClientKey(pub SealingKey);

/// Opens the text of a sealed send: sealed to this region's key, bound to the space, the
/// send's idempotency key and this region. Anything else (tampered, sealed to another key,
/// replayed from another space, send or region, not UTF-8) is refused with `integrity`.
pub(crate) fn open_send(
    region: &RegionId,
    key: &KeyPair,
    space: &SpaceId,
    idempotency_key: &str,
    sealed: &SealedPayload,
) -> Result<String, ErrorBody> {
    let binding = Binding {
        space,
        message: idempotency_key,
        region,
    };
    let bytes = envelope::open(key, &binding, sealed).map_err(|e| ErrorBody::from(&e))?;
    String::from_utf8(bytes).map_err(|_| {
        ErrorBody::from(&meridian::Error::Integrity(
            "the sealed payload does not hold UTF-8 text".into(),
        ))
    })
}

/// `message` as one client receives it in a DS space: the body sealed to `to`, bound to
/// (space, message id, this region), and an empty `body`.
pub(crate) fn seal_message(
    region: &RegionId,
    to: &SealingKey,
    message: &Message,
) -> meridian::Result<Message> {
    let binding = Binding {
        space: &message.space,
        message: message.id.as_str(),
        region,
    };
    let sealed = envelope::seal(to, &binding, message.body.as_bytes())?;
    Ok(Message {
        body: String::new(),
        sealed: Some(sealed),
        ..message.clone()
    })
}

/// `messages` sealed to `to` when `seal` (a DS space), as they are otherwise.
pub(crate) fn page(
    region: &RegionId,
    to: Option<&SealingKey>,
    seal: bool,
    messages: Vec<Message>,
) -> Result<Vec<Message>, ErrorBody> {
    if !seal {
        return Ok(messages);
    }
    let to = to.ok_or_else(|| key_required(region))?;
    messages
        .iter()
        .map(|m| seal_message(region, to, m).map_err(|e| ErrorBody::from(&e)))
        .collect()
}

/// A DS space asked of a socket that sent no sealing key at connect.
pub(crate) fn key_required(region: &RegionId) -> ErrorBody {
    ErrorBody::from(&meridian::Error::PolicyViolation {
        region: region.clone(),
        reason: "a sealing key is required for this space: connect with a public_key".into(),
    })
}

/// A plaintext send to a DS space.
pub(crate) fn plaintext_refused(region: &RegionId) -> ErrorBody {
    ErrorBody::from(&meridian::Error::PolicyViolation {
        region: region.clone(),
        reason: "this space requires sealed payloads: send the text in `sealed`, not `body`".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use meridian::ErrorCode;
    use meridian::model::{MessageId, UserId};

    use super::*;

    fn message(body: &str) -> Message {
        Message {
            space: SpaceId::new_unchecked("maple:lounge"),
            seq: 1,
            id: MessageId::new_unchecked("ca-central-1"),
            sender: UserId::new_unchecked("chloe"),
            body: body.into(),
            sealed: None,
            sent_at_ms: 1,
            trace: None,
        }
    }

    #[test]
    fn a_sealed_delivery_opens_only_with_the_client_key_and_its_own_binding() {
        let region = RegionId::new_unchecked("ca-central");
        let client = KeyPair::generate();
        let m = message("bonjour");
        let sealed = seal_message(&region, client.public(), &m).unwrap();
        assert!(sealed.body.is_empty());
        let payload = sealed.sealed.as_ref().unwrap();
        let binding = Binding {
            space: &m.space,
            message: m.id.as_str(),
            region: &region,
        };
        assert_eq!(
            envelope::open(&client, &binding, payload).unwrap(),
            b"bonjour"
        );
        assert!(envelope::open(&KeyPair::generate(), &binding, payload).is_err());
    }

    #[test]
    fn a_sealed_send_opens_with_its_binding_and_nothing_else() {
        let region = RegionId::new_unchecked("ca-central");
        let key = KeyPair::generate();
        let space = SpaceId::new_unchecked("maple:lounge");
        let binding = Binding {
            space: &space,
            message: "k1",
            region: &region,
        };
        let sealed = envelope::seal(key.public(), &binding, "salut".as_bytes()).unwrap();
        assert_eq!(
            open_send(&region, &key, &space, "k1", &sealed).unwrap(),
            "salut"
        );
        let err = open_send(&region, &key, &space, "k2", &sealed).unwrap_err();
        assert_eq!(err.code, ErrorCode::Integrity);
        let not_text = envelope::seal(key.public(), &binding, &[0xff, 0xfe]).unwrap();
        let err = open_send(&region, &key, &space, "k1", &not_text).unwrap_err();
        assert_eq!(err.code, ErrorCode::Integrity);
        let err = page(&region, None, true, vec![message("x")]).unwrap_err();
        assert_eq!(err.code, ErrorCode::PolicyViolation);
        assert_eq!(
            page(&region, None, false, vec![message("x")])
                .unwrap()
                .len(),
            1
        );
    }
}
