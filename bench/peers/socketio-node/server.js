// A minimal socket.io 4.x server with the surface Herald's benchmark drives: Socket.IO over
// WebSocket on /socket.io/, each client joining the room named by the client_id of its
// CONNECT auth, and POST /push emitting `message` [msg] to the room of every recv_id.
// No durability, no acknowledgements: a peer to compare Herald against, nothing more.
//
// Usage: node server.js [HOST:PORT]   (default 127.0.0.1:3000)
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const [host, port] = (process.argv[2] || "127.0.0.1:3000").split(":");
let nextId = 1;

// noDelay (Node's default, said here): Nagle off, like Herald and the socketioxide peer.
const server = http.createServer({ noDelay: true }, (req, res) => {
  if (req.method !== "POST" || req.url !== "/push") {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"ok":0,"errors":["not found"]}');
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let p;
    try {
      p = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (e) {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: 0, errors: [String(e)] }));
      return;
    }
    const channel = typeof p.channel === "string" ? [p.channel] : p.channel || [];
    let sent = 0;
    for (const to of p.recv_id || []) {
      const msg = { id: nextId++, from: p.send_id, channel, data: p.data, ts: Date.now() };
      io.to(to).emit("message", [msg]);
      sent++;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ ok: 1, send: sent }));
  });
});

const io = new Server(server, { transports: ["websocket", "polling"] });
io.on("connection", (socket) => {
  const id = socket.handshake.auth && socket.handshake.auth.client_id;
  if (typeof id === "string") socket.join(id);
});

server.listen(Number(port), host, () => {
  console.error(`socketio-node-peer listening on ${host}:${port}`);
});
