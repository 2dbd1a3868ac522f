// The official Node socket.io server, answering the Meridian requests the benchmarks make
// (PROTOCOL.md) with ack handlers and as little work as that takes: `message:send` numbers
// each space's messages and acks a receipt (`message:send_batch` a receipt per send, in
// order); `space:join` acks the space's head; anything
// else with an ack (`inbox:subscribe`, `presence:set`, ...) is acked `{"ok": {}}`. Every
// socket is accepted (no token check). Nothing is stored.
//
// Listens on 127.0.0.1 on a free port and prints `LISTENING <port>` once it accepts
// connections; exits when its stdin closes.

import http from "node:http";
import { Server } from "socket.io";

const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ["websocket"] });
const heads = new Map();
let sent = 0;

/** Numbers a send in its space; its receipt. */
function store(send) {
  const seq = (heads.get(send.space) ?? 0) + 1;
  heads.set(send.space, seq);
  sent += 1;
  return { message_id: `node-${sent}`, seq, sent_at_ms: Date.now() };
}

io.on("connection", (socket) => {
  socket.onAny((event, ...args) => {
    const ack = args[args.length - 1];
    if (typeof ack !== "function") {
      return;
    }
    const request = args[0] ?? {};
    switch (event) {
      case "message:send":
        ack({ ok: store(request) });
        break;
      case "message:send_batch":
        ack({ ok: { receipts: (request.messages ?? []).map(store) } });
        break;
      case "space:join": {
        const head = heads.get(request.space) ?? 0;
        ack({
          ok: {
            space: request.space,
            head_seq: head,
            missed: [],
            complete: true,
            oldest_seq: head + 1,
            epoch: "node",
          },
        });
        break;
      }
      default:
        ack({ ok: {} });
    }
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);
});

function shutdown() {
  io.close();
  process.exit(0);
}

process.stdin.on("end", shutdown);
process.stdin.on("close", shutdown);
process.stdin.resume();
