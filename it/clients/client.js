// A real socket.io-client (npm) driven over stdin/stdout by Herald's end-to-end tests.
//
// Usage: node client.js '<options JSON>'
//   options: { url, auth?, query?, transports? (["websocket"] | ["polling","websocket"]),
//              extraHeaders?, ackPolicy?: "auto" | "manual", legacy?: npm package name,
//              reconnection? (default false), withCredentials? (keeps cookies: a load balancer's
//              sticky-session cookie) }
// With legacy (socket.io-client-v2 or socket.io-client-v1: 2.x or 1.4, Engine.IO v3, the
// protocol of xiucall-push's clients), the client sends no CONNECT auth (credentials travel as
// headers or query parameters) and a refusal, which those deliver as an `error` event, is
// reported as connect_error.
// Writes one JSON object per line to stdout for everything that happens:
//   {"ev":"connect","transport":..}, {"ev":"upgrade","transport":..},
//   {"ev":"message","batch":[..],"hasAck":bool}, {"ev":"kicked","data":..},
//   {"ev":"connect_error","data":..}, {"ev":"disconnect","reason":..}, {"ev":"error","message":..}
// Reads one JSON command per line from stdin:
//   {"cmd":"ack"} acknowledges every batch received and not yet acknowledged (ackPolicy "manual"),
//   {"cmd":"commit","n":N} emits `commit` with N, {"cmd":"disconnect"}, {"cmd":"exit"}.
"use strict";
const readline = require("readline");
const opts = JSON.parse(process.argv[2] || "{}");
const io = opts.legacy ? require(opts.legacy) : require("socket.io-client").io;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const pending = [];

const socket = io(opts.url, {
  auth: opts.auth,
  query: opts.query,
  transports: opts.transports || ["polling", "websocket"],
  extraHeaders: opts.extraHeaders,
  reconnection: opts.reconnection || false,
  reconnectionDelay: 200,
  reconnectionDelayMax: 1000,
  withCredentials: opts.withCredentials || false,
  timeout: 10000,
  forceNew: true,
});

socket.on("connect", () => {
  out({ ev: "connect", transport: socket.io.engine.transport.name });
  socket.io.engine.on("upgrade", (t) => out({ ev: "upgrade", transport: t.name }));
});
socket.on("connect_error", (err) => out({ ev: "connect_error", data: err.data || null, message: err.message || String(err) }));
if (opts.legacy) {
  socket.on("error", (data) => out({ ev: "connect_error", data, message: (data && data.message) || String(data) }));
}
socket.on("disconnect", (reason) => out({ ev: "disconnect", reason }));
socket.on("kicked", (data) => out({ ev: "kicked", data }));
socket.on("message", (batch, ack) => {
  out({ ev: "message", batch, hasAck: typeof ack === "function" });
  if (typeof ack === "function") {
    if ((opts.ackPolicy || "auto") === "auto") ack();
    else pending.push(ack);
  }
});

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  let c;
  try { c = JSON.parse(line); } catch (e) { out({ ev: "error", message: "bad command " + line }); return; }
  if (c.cmd === "ack") { while (pending.length) pending.shift()(); out({ ev: "acked" }); }
  else if (c.cmd === "commit") { socket.emit("commit", c.n); }
  else if (c.cmd === "disconnect") { socket.disconnect(); }
  else if (c.cmd === "exit") { socket.disconnect(); process.exit(0); }
  else out({ ev: "error", message: "unknown command " + line });
}).on("close", () => { socket.disconnect(); process.exit(0); });
