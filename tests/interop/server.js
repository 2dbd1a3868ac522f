// The official socket.io server, configured for the interoperability tests in
// tests/tests/interop_node.rs.
//
// Listens on 127.0.0.1 on a free port and prints exactly one line, `LISTENING <port>`, on
// stdout once it accepts connections. Exits when its stdin closes, so a test process that
// dies never leaves it behind.
//
// Events:
//   echo (...args, ack)      acks with the arguments it received
//   join (room, ack)         joins the room, acks "joined"
//   broadcast (room, x, ack) emits `news` with x to everyone in the room, acks "ok"
//   kick (ack)               acks "bye", then the server disconnects the socket
// Connecting with auth `{ token: "bad" }` is refused with the error "unauthorized".
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  pingInterval: 300,
  pingTimeout: 400,
});

io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  if (auth.token === "bad") {
    next(new Error("unauthorized"));
  } else {
    next();
  }
});

// The last argument is the ack callback when the client asked for one.
function splitAck(args) {
  const last = args[args.length - 1];
  if (typeof last === "function") {
    return [args.slice(0, -1), last];
  }
  return [args, () => {}];
}

io.on("connection", (socket) => {
  socket.on("echo", (...raw) => {
    const [args, ack] = splitAck(raw);
    ack(...args);
  });

  socket.on("join", (...raw) => {
    const [[room], ack] = splitAck(raw);
    socket.join(String(room));
    ack("joined");
  });

  socket.on("broadcast", (...raw) => {
    const [[room, payload], ack] = splitAck(raw);
    io.to(String(room)).emit("news", payload);
    ack("ok");
  });

  socket.on("kick", (...raw) => {
    const [, ack] = splitAck(raw);
    ack("bye");
    // Let the ack leave first, then close the whole connection from the server side.
    setImmediate(() => socket.disconnect(true));
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
process.stdin.on("error", shutdown);
process.stdin.resume();
