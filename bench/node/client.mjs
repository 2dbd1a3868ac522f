// socket.io-client doing what the Rust clients of the benchmarks do (bench/src/spec.rs):
// `node client.mjs '<ClientSpec json>'`. Prints `MEASURE` when the measured phase starts
// and `RESULT {json}` at the end, with the figures of that phase only. It reads nothing
// from /proc itself: the suite counts its wake-ups and IO bytes from outside.

import { io } from "socket.io-client";

const spec = JSON.parse(process.argv[2]);
// A valid X25519 public key for the auth payload; nothing is ever sealed to it.
const PUBLIC_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/** [url, spaces] per region: one connection each. */
function byRegion(targets) {
  const groups = new Map();
  for (const t of targets) {
    if (!groups.has(t.region)) groups.set(t.region, [t.url, []]);
    groups.get(t.region)[1].push(t.space);
  }
  return [...groups.values()];
}

function connect(url) {
  const socket = io(url, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    auth: { token: spec.token, protocol: 1, public_key: PUBLIC_KEY },
  });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (e) => reject(new Error(`connect ${url}: ${e.message}`)));
  });
}

function body(bytes, n) {
  let s = `m${n} `;
  while (s.length < bytes) s += String.fromCharCode(97 + (s.length % 26));
  return s.slice(0, Math.max(bytes, 1));
}

function key() {
  let k = "";
  for (let i = 0; i < 4; i++) k += Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, "0");
  return k;
}

function meter() {
  process.stdout.write("MEASURE\n");
  return { started: process.hrtime.bigint(), cpu: process.cpuUsage() };
}

function quantile(values, q) {
  if (values.length === 0) return 0;
  values.sort((a, b) => a - b);
  const rank = Math.ceil(q * values.length);
  return values[Math.min(Math.max(rank, 1), values.length) - 1];
}

/** The figures of the measured phase; prints `END` (the suite samples the process then). */
function finish(m, messages, latencies) {
  const seconds = Number(process.hrtime.bigint() - m.started) / 1e9;
  const cpu = process.cpuUsage(m.cpu);
  const usage = process.resourceUsage();
  const result = {
    messages,
    seconds,
    p50_us: quantile(latencies, 0.5),
    p99_us: quantile(latencies, 0.99),
    cpu_user_ms: cpu.user / 1000,
    cpu_sys_ms: cpu.system / 1000,
    rss_kib: Math.round(process.memoryUsage().rss / 1024),
    peak_rss_kib: usage.maxRSS,
    // Wake-ups and IO bytes: sampled from outside by the suite.
    wakeups: 0,
    io_bytes: 0,
  };
  process.stdout.write("END\n");
  return result;
}

/** `count` sends over `spaces` in turn on `socket`, `window` in flight; the latencies (µs). */
function sends(socket, spaces, count, window, bodyBytes) {
  return new Promise((resolve, reject) => {
    const latencies = [];
    let sent = 0;
    let inFlight = 0;
    const pump = () => {
      while (inFlight < window && sent < count) {
        const n = sent;
        const started = process.hrtime.bigint();
        socket.emit(
          "message:send",
          { space: spaces[n % spaces.length], key: key(), body: body(bodyBytes, n) },
          (answer) => {
            inFlight -= 1;
            if (!answer || !answer.ok) {
              reject(new Error(`send ${n} failed: ${JSON.stringify(answer)}`));
              return;
            }
            latencies.push(Number(process.hrtime.bigint() - started) / 1000);
            if (latencies.length === count) resolve(latencies);
            else pump();
          },
        );
        inFlight += 1;
        sent += 1;
      }
    };
    if (count === 0) resolve(latencies);
    else pump();
  });
}

async function sendPhase(conns, total, window, bodyBytes) {
  const n = conns.length;
  const work = conns.map(([socket, spaces], i) =>
    sends(socket, spaces, Math.floor(total / n) + (i < total % n ? 1 : 0), window, bodyBytes),
  );
  return (await Promise.all(work)).flat();
}

async function join(socket, space) {
  const answer = await socket.emitWithAck("space:join", { space });
  if (!answer || !answer.ok) throw new Error(`join ${space}: ${JSON.stringify(answer)}`);
}

async function main() {
  const groups = byRegion(spec.targets);
  const conns = [];
  for (const [url, spaces] of groups) conns.push([await connect(url), spaces]);
  let result;
  if (spec.mode === "send") {
    const window = Math.max(Math.ceil(spec.window / conns.length), 1);
    await sendPhase(conns, spec.warmup, window, spec.body_bytes);
    const m = meter();
    const latencies = await sendPhase(conns, spec.count, window, spec.body_bytes);
    result = finish(m, latencies.length, latencies);
  } else if (spec.mode === "receive") {
    for (const [socket, spaces] of conns) for (const space of spaces) await join(socket, space);
    let received = 0;
    let bodyBytes = 0;
    let measuring = false;
    for (const [socket] of conns) {
      socket.on("message", (message) => {
        bodyBytes += message.body.length;
        if (measuring) received += 1;
      });
    }
    await new Promise((r) => setTimeout(r, spec.warmup_seconds * 1000));
    measuring = true;
    const m = meter();
    await new Promise((r) => setTimeout(r, spec.seconds * 1000));
    measuring = false;
    result = finish(m, received, []);
  } else if (spec.mode === "idle") {
    for (const [socket, spaces] of conns) for (const space of spaces) await join(socket, space);
    const m = meter();
    await new Promise((r) => setTimeout(r, spec.seconds * 1000));
    result = finish(m, 0, []);
  } else {
    throw new Error(`unknown mode ${spec.mode}`);
  }
  // Sockets stay open a moment after END, while the suite samples this process.
  await new Promise((r) => setTimeout(r, 300));
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  for (const [socket] of conns) socket.close();
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${e.stack ?? e}\n`);
    process.exit(1);
  },
);
