//! The ceiling: a client with no SDK logic, speaking the same Engine.IO v4 / Socket.IO v5
//! frames as Meridian over tokio-tungstenite (PROTOCOL.md): `open`, `CONNECT` with the auth
//! payload, then `message:send` events with ack ids, pongs to pings, and nothing else: no
//! directory, no policy, no outbox, no reconnects, no ordering.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::meter::{Meter, body, receive};
use crate::spec::{ClientResult, ClientSpec, Mode, Target};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One Socket.IO connection.
struct Conn {
    ws: Socket,
    next_ack: u64,
}

/// A valid X25519 public key (base64 of 32 bytes) for the auth payload: the raw client
/// never opens anything sealed to it.
const PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

impl Conn {
    async fn open(url: &str, token: &str) -> Result<Self, String> {
        let endpoint = format!("{url}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        let mut conn = Self { ws, next_ack: 0 };
        let open = conn.text().await?;
        if !open.starts_with('0') {
            return Err(format!("expected the Engine.IO open packet, got {open:?}"));
        }
        let auth = serde_json::json!({"token": token, "protocol": 1, "public_key": PUBLIC_KEY});
        conn.send(format!("40{auth}")).await?;
        loop {
            let frame = conn.text().await?;
            if frame.starts_with("40") {
                return Ok(conn);
            }
            if frame.starts_with("44") {
                return Err(format!("connect refused: {frame}"));
            }
        }
    }

    async fn send(&mut self, frame: String) -> Result<(), String> {
        self.ws
            .send(Message::Text(frame.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// The next text frame that is not a ping (pings are answered here).
    async fn text(&mut self) -> Result<String, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => self.send("3".into()).await?,
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err("connection closed".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
            }
        }
    }

    /// `count` sends to `spaces` in turn, `window` in flight at most; the ack latencies.
    async fn sends(
        &mut self,
        spaces: &[String],
        count: usize,
        window: usize,
        body_bytes: usize,
    ) -> Result<Vec<f64>, String> {
        let mut in_flight: HashMap<u64, Instant> = HashMap::with_capacity(window);
        let mut latencies = Vec::with_capacity(count);
        let mut sent = 0;
        while latencies.len() < count {
            // Fill the window, then flush once.
            while in_flight.len() < window && sent < count {
                let id = self.next_ack;
                self.next_ack += 1;
                let space = &spaces[sent % spaces.len()];
                let payload = serde_json::json!({
                    "space": space,
                    "key": format!("{:032x}", fastrand::u128(..)),
                    "body": body(body_bytes, sent),
                });
                let frame = format!("42{id}[\"message:send\",{payload}]");
                self.ws
                    .feed(Message::Text(frame.into()))
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                in_flight.insert(id, Instant::now());
                sent += 1;
            }
            self.ws.flush().await.map_err(|e| format!("send: {e}"))?;
            let frame = self.text().await?;
            let Some((id, answer)) = ack(&frame) else {
                continue;
            };
            let Some(started) = in_flight.remove(&id) else {
                return Err(format!("an ack for {id}, which is not in flight"));
            };
            if !answer.starts_with("[{\"ok\"") {
                return Err(format!("send {id} failed: {answer}"));
            }
            latencies.push(started.elapsed().as_secs_f64() * 1e6);
        }
        Ok(latencies)
    }

    /// Joins `space` (the answer is awaited).
    async fn join(&mut self, space: &str) -> Result<(), String> {
        let id = self.next_ack;
        self.next_ack += 1;
        let payload = serde_json::json!({ "space": space });
        self.send(format!("42{id}[\"space:join\",{payload}]"))
            .await?;
        loop {
            let frame = self.text().await?;
            if let Some((got, answer)) = ack(&frame)
                && got == id
            {
                return if answer.starts_with("[{\"ok\"") {
                    Ok(())
                } else {
                    Err(format!("join {space}: {answer}"))
                };
            }
        }
    }
}

/// The fan-in senders: one connection per target, as user `tokens[i % tokens.len()]`,
/// each sending to its space one message at a time, until the process is killed.
pub async fn senders(
    targets: &[Target],
    tokens: &[String],
    body_bytes: usize,
) -> Result<(), String> {
    let floods = targets.iter().enumerate().map(|(i, target)| {
        let token = tokens[i % tokens.len()].clone();
        async move {
            let mut conn = Conn::open(&target.url, &token).await?;
            let spaces = [target.space.clone()];
            let mut sending = Ok(());
            while sending.is_ok() {
                sending = conn.sends(&spaces, 1, 1, body_bytes).await.map(drop);
            }
            sending
        }
    });
    let outcome: Result<Vec<()>, String> = futures::future::try_join_all(floods).await;
    outcome.map(|_| ())
}

/// The probe of the scale scenario: one message to each target's space, as `token`.
pub async fn probe(targets: &[Target], token: &str) -> Result<(), String> {
    for (url, spaces) in by_region(targets) {
        let mut conn = Conn::open(&url, token).await?;
        conn.sends(&spaces, spaces.len(), 16, crate::spec::BODY_BYTES)
            .await?;
    }
    Ok(())
}

/// `43<id>[...]`: the ack id and its arguments.
fn ack(frame: &str) -> Option<(u64, &str)> {
    let rest = frame.strip_prefix("43")?;
    let digits = rest.find('[')?;
    Some((rest[..digits].parse().ok()?, &rest[digits..]))
}

/// The targets grouped by region (one connection each, to its URL), in first-seen order.
fn by_region(targets: &[Target]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(&str, String, Vec<String>)> = Vec::new();
    for t in targets {
        match groups.iter_mut().find(|(region, _, _)| *region == t.region) {
            Some((_, _, spaces)) => spaces.push(t.space.clone()),
            None => groups.push((&t.region, t.url.clone(), vec![t.space.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|(_, url, spaces)| (url, spaces))
        .collect()
}

/// A connection per region of `targets`, each space joined.
async fn joined(targets: &[Target], token: &str) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::new();
    for (url, spaces) in by_region(targets) {
        let mut conn = Conn::open(&url, token).await?;
        for space in &spaces {
            conn.join(space).await?;
        }
        conns.push(conn);
    }
    Ok(conns)
}

/// `total` sends shared out between the connections (each with `window` in flight), all at
/// once; their ack latencies.
async fn send_phase(
    conns: &mut [(Conn, Vec<String>)],
    total: usize,
    window: usize,
    body_bytes: usize,
) -> Result<Vec<f64>, String> {
    let n = conns.len();
    let work = conns.iter_mut().enumerate().map(|(i, (conn, spaces))| {
        let share = total / n + usize::from(i < total % n);
        conn.sends(spaces, share, window, body_bytes)
    });
    Ok(futures::future::try_join_all(work).await?.concat())
}

/// Runs `spec`; prints `MEASURE` when the measured phase starts.
pub async fn run(spec: &ClientSpec) -> Result<ClientResult, String> {
    match &spec.mode {
        Mode::Send {
            targets,
            window,
            count,
            warmup,
            body_bytes,
        } => {
            let groups = by_region(targets);
            let mut conns = Vec::new();
            for (url, spaces) in &groups {
                conns.push((Conn::open(url, &spec.token).await?, spaces.clone()));
            }
            let window = window.div_ceil(conns.len()).max(1);
            send_phase(&mut conns, *warmup, window, *body_bytes).await?;
            let meter = Meter::start()?;
            let latencies = send_phase(&mut conns, *count, window, *body_bytes).await?;
            meter.finish(latencies.len() as u64, latencies)
        }
        Mode::Receive {
            targets,
            seconds,
            warmup_seconds,
        } => {
            let conns = joined(targets, &spec.token).await?;
            // The sockets are read in turn by one task: a message is "consumed" by parsing
            // it and reading its body.
            let mut streams = futures::stream::select_all(conns.into_iter().map(|c| {
                futures::stream::unfold(c, |mut c| async move {
                    let frame = c.text().await;
                    Some((frame, c))
                })
                .boxed()
            }));
            let mut body_bytes = 0usize;
            let result = receive(&mut streams, *warmup_seconds, *seconds, |frame| {
                let frame = frame?;
                let Some(event) = frame.strip_prefix("42") else {
                    return Ok(false);
                };
                let parsed: serde_json::Value = serde_json::from_str(event)
                    .map_err(|e| format!("an event that is not JSON: {e}"))?;
                if parsed.get(0).and_then(|n| n.as_str()) != Some("message") {
                    return Ok(false);
                }
                body_bytes += parsed[1]["body"].as_str().map_or(0, str::len);
                Ok(true)
            })
            .await;
            std::hint::black_box(body_bytes);
            result
        }
        Mode::Scale { .. } => Err("the scale scenario is Meridian's alone".into()),
        Mode::Idle { targets, seconds } => {
            let mut conns = joined(targets, &spec.token).await?;
            let meter = Meter::start_quiet()?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(*seconds);
            let idle = conns.iter_mut().map(|c| async move {
                // Answers pings until the deadline; nothing else arrives.
                while tokio::time::timeout_at(deadline, c.text()).await.is_ok() {}
            });
            futures::future::join_all(idle).await;
            meter.finish(0, Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_parsed() {
        assert_eq!(ack("4312[{\"ok\":{}}]"), Some((12, "[{\"ok\":{}}]")));
        assert_eq!(ack("42[\"message\",{}]"), None);
        assert_eq!(ack("43x[]"), None);
    }

    #[test]
    fn targets_group_by_region_in_order() {
        let t = |space: &str, region: &str| Target {
            space: space.into(),
            region: region.into(),
            url: format!("ws://{region}"),
        };
        let groups = by_region(&[t("a", "1"), t("b", "2"), t("c", "1")]);
        assert_eq!(
            groups,
            vec![
                ("ws://1".to_owned(), vec!["a".to_owned(), "c".to_owned()]),
                ("ws://2".to_owned(), vec!["b".to_owned()]),
            ]
        );
    }
}
