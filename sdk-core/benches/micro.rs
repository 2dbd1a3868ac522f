//! Microbenchmarks of the core's per-message hot paths, with criterion.
//!
//! - `codec/*`: the Engine.IO v4 + Socket.IO v5 codec, used the way `session.rs` uses it.
//!   `encode_message_send` turns a `message:send` request (space `acme:general`, a 32-hex
//!   idempotency key, a 100-byte body, a traceparent) into its text frame with an ack id:
//!   `serde_json::to_value`, `SioPacket::event(..).encode()`, `EioPacket::Message(..).encode()`.
//!   `decode_send_ack` and `decode_message_event` parse the region's frames (the ack of that
//!   send, and a `message` event carrying a 100-byte body) from text into a `SioPacket`:
//!   `EioPacket::decode`, then `SioPacket::decode`.
//! - `policy/*`: `policy::check_space_entry`, the check the client makes before anything
//!   leaves the device (joining, sending, typing), for a strict policy and a whitelist
//!   policy, each for a region it permits and one it refuses (the refusal builds its error).
//! - `envelope/*`: `envelope::seal` and `envelope::open` of a 100-byte body (HPKE base mode,
//!   X25519 + HKDF-SHA256 + ChaCha20Poly1305, base64 on the wire), bound to space,
//!   idempotency key and region as a send to a data-sovereignty space is.
//!
//! Every benchmark checks once, before it is timed, that its operation gives the right
//! answer (round trips, permits or refuses as the policy says), so a broken path fails the
//! run instead of being measured.
//!
//! ```text
//! cargo bench -p meridian --bench micro
//! cargo bench -p meridian --bench micro -- codec          # one group
//! cargo bench -p meridian --bench micro -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(
    missing_docs,
    reason = "criterion_group! and criterion_main! define items without docs"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;

use meridian::codec::{CodecError, EioPacket, SioPacket, SioPacketKind};
use meridian::envelope::{self, Binding, KeyPair};
use meridian::model::{
    CompanyId, GeoPolicy, IdempotencyKey, Message, MessageId, PolicyId, PolicyMode, RegionId,
    Residency, SendReceipt, SpaceId, SpaceKind, SpaceLocation, UserContext, UserId,
};
use meridian::policy;
use meridian::protocol::{Reply, SendReply, SendRequest, event};

const SPACE: &str = "acme:general";
/// 128 random bits in hex, as `Client::send_message` makes them.
const KEY: &str = "3f9c2a7e5b1d4c8fa06e92b7d41c5e38";
/// 100 bytes of UTF-8.
const BODY: &str = "Deploy window moved to 14:00 UTC; the eu-west failover drill runs first, the runbook is in #ops 🚀";
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const ACK_ID: u64 = 1041;
const MESSAGE_ID: &str = "eu-west-k3v9q2-1042";
const SEQ: u64 = 1042;
const SENT_AT_MS: u64 = 1_763_850_000_000;

fn space() -> SpaceId {
    SpaceId::new(SPACE).expect("a valid space id")
}

fn region(id: &str) -> RegionId {
    RegionId::new(id).expect("a valid region id")
}

/// What `session.rs` does to put a request on the wire (`emit` with the request as its one
/// argument).
fn encode_event(name: &str, request: &SendRequest, ack_id: u64) -> String {
    let payload = serde_json::to_value(request).unwrap_or(Value::Null);
    EioPacket::Message(SioPacket::event(name, vec![payload], Some(ack_id)).encode()).encode()
}

/// What `session.rs` does with a text frame before it looks at the packet (`on_frame`).
fn decode_frame(frame: &str) -> Result<SioPacket, CodecError> {
    match EioPacket::decode(frame)? {
        EioPacket::Message(m) => SioPacket::decode(&m),
        other => Err(CodecError(format!("not a message frame: {other:?}"))),
    }
}

fn codec_benches(c: &mut Criterion) {
    let request = SendRequest {
        space: space(),
        key: IdempotencyKey::new(KEY).expect("a valid idempotency key"),
        body: BODY.to_owned(),
        sealed: None,
        trace: Some(TRACE.to_owned()),
    };
    let receipt = SendReceipt {
        message_id: MessageId::new(MESSAGE_ID).expect("a valid message id"),
        seq: SEQ,
        sent_at_ms: SENT_AT_MS,
    };
    let message = Message {
        space: space(),
        seq: SEQ,
        id: receipt.message_id.clone(),
        sender: UserId::new("ana").expect("a valid user id"),
        body: BODY.to_owned(),
        sealed: None,
        sent_at_ms: SENT_AT_MS,
        trace: Some(TRACE.to_owned()),
    };
    // The region's frames, as a Socket.IO server writes them.
    let ack_frame = EioPacket::Message(
        SioPacket::main(SioPacketKind::Ack {
            ack_id: ACK_ID,
            args: vec![serde_json::to_value(Reply::Ok(&receipt)).expect("a receipt as JSON")],
        })
        .encode(),
    )
    .encode();
    let message_frame = EioPacket::Message(
        SioPacket::event(
            event::MESSAGE,
            vec![serde_json::to_value(&message).expect("a message as JSON")],
            None,
        )
        .encode(),
    )
    .encode();

    // The send's frame decodes back to the request.
    let send_frame = encode_event(event::MESSAGE_SEND, &request, ACK_ID);
    assert!(
        send_frame.starts_with(&format!("42{ACK_ID}[\"message:send\",{{")),
        "{send_frame}"
    );
    let SioPacketKind::Event { name, args, ack_id } = decode_frame(&send_frame)
        .expect("the send frame decodes")
        .kind
    else {
        panic!("the send frame is not an event: {send_frame}")
    };
    assert_eq!((name.as_str(), ack_id), (event::MESSAGE_SEND, Some(ACK_ID)));
    let [arg] = <[Value; 1]>::try_from(args).expect("one argument");
    let decoded: SendRequest = serde_json::from_value(arg).expect("a send request");
    assert_eq!(decoded, request);
    // The ack carries the receipt.
    assert!(
        ack_frame.starts_with(&format!("43{ACK_ID}[{{\"ok\":")),
        "{ack_frame}"
    );
    let SioPacketKind::Ack { ack_id, args } = decode_frame(&ack_frame).expect("the ack").kind
    else {
        panic!("the ack frame is not an ack: {ack_frame}")
    };
    assert_eq!(ack_id, ACK_ID);
    let [arg] = <[Value; 1]>::try_from(args).expect("one argument");
    let reply: Reply<SendReply> = serde_json::from_value(arg).expect("a send reply");
    assert_eq!(reply, Reply::Ok(receipt));
    // The message event carries the message.
    let SioPacketKind::Event { name, args, ack_id } = decode_frame(&message_frame)
        .expect("the message event")
        .kind
    else {
        panic!("the message frame is not an event: {message_frame}")
    };
    assert_eq!((name.as_str(), ack_id), (event::MESSAGE, None));
    let [arg] = <[Value; 1]>::try_from(args).expect("one argument");
    let decoded: Message = serde_json::from_value(arg).expect("a message");
    assert_eq!(decoded, message);

    let mut group = c.benchmark_group("codec");
    group.bench_function("encode_message_send", |b| {
        b.iter(|| {
            encode_event(
                black_box(event::MESSAGE_SEND),
                black_box(&request),
                black_box(ACK_ID),
            )
        })
    });
    group.bench_function("decode_send_ack", |b| {
        b.iter(|| decode_frame(black_box(&ack_frame)))
    });
    group.bench_function("decode_message_event", |b| {
        b.iter(|| decode_frame(black_box(&message_frame)))
    });
    group.finish();
}

fn policy_benches(c: &mut Criterion) {
    let user = |name: &str, home: &str, id: &str, mode| UserContext {
        user: UserId::new(name).expect("a valid user id"),
        home_region: region(home),
        policy: GeoPolicy {
            id: PolicyId::new(id).expect("a valid policy id"),
            mode,
            residency: Residency::Dr,
        },
    };
    let housed_in = |id: &str| SpaceLocation {
        space: space(),
        region: region(id),
        company: CompanyId::new("acme").expect("a valid company id"),
        kind: SpaceKind::Channel,
        residency: Residency::Dr,
    };
    // Strict: the home region only. Whitelist: the home region and its list.
    let strict = user("ana", "eu-west", "eu-strict", PolicyMode::Strict);
    let whitelist = user(
        "chloe",
        "ca-central",
        "ca-plus-us",
        PolicyMode::Whitelist {
            regions: vec![region("us-east")],
        },
    );
    let cases = [
        ("strict_permitted", &strict, housed_in("eu-west"), true),
        ("strict_refused", &strict, housed_in("us-east"), false),
        (
            "whitelist_permitted",
            &whitelist,
            housed_in("us-east"),
            true,
        ),
        ("whitelist_refused", &whitelist, housed_in("eu-west"), false),
    ];

    let mut group = c.benchmark_group("policy");
    for (name, ctx, space, permitted) in &cases {
        match policy::check_space_entry(ctx, space) {
            Ok(()) => assert!(permitted, "{name}: permitted, should be refused"),
            Err(e) => {
                assert!(!permitted, "{name}: refused, should be permitted: {e}");
                assert_eq!(
                    e.code(),
                    meridian::ErrorCode::PolicyViolation,
                    "{name}: {e}"
                );
            }
        }
        group.bench_function(*name, |b| {
            b.iter(|| policy::check_space_entry(black_box(ctx), black_box(space)))
        });
    }
    group.finish();
}

fn envelope_benches(c: &mut Criterion) {
    assert_eq!(BODY.len(), 100);
    let region_key = KeyPair::generate();
    let (space, region) = (space(), region("eu-west"));
    // A send to a data-sovereignty space: bound to the space, its idempotency key and the
    // housing region.
    let binding = Binding {
        space: &space,
        message: KEY,
        region: &region,
    };
    let sealed = envelope::seal(region_key.public(), &binding, BODY.as_bytes()).expect("seals");
    assert_eq!(
        envelope::open(&region_key, &binding, &sealed).expect("opens"),
        BODY.as_bytes()
    );
    let stranger = KeyPair::generate();
    assert!(envelope::open(&stranger, &binding, &sealed).is_err());

    let mut group = c.benchmark_group("envelope");
    group.bench_function("seal_100B", |b| {
        b.iter(|| {
            envelope::seal(
                black_box(region_key.public()),
                black_box(&binding),
                black_box(BODY.as_bytes()),
            )
        })
    });
    group.bench_function("open_100B", |b| {
        b.iter(|| {
            envelope::open(
                black_box(&region_key),
                black_box(&binding),
                black_box(&sealed),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, codec_benches, policy_benches, envelope_benches);
criterion_main!(benches);
