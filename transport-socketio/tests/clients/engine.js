// The official engine.io-client (a dependency of socket.io-client) against the bare
// Engine.IO echo. Usage: node engine.js <url> <websocket|polling>; exits 0 when text and
// binary came back unchanged.
"use strict";
const { Socket } = require("engine.io-client");
const [url, mode] = process.argv.slice(2);
const transports = mode === "websocket" ? ["websocket"] : ["polling", "websocket"];
const socket = new Socket(url, { path: "/engine.io/", transports });
const got = [];
const done = (code, why) => { process.stdout.write(JSON.stringify({ got, why, transport: socket.transport && socket.transport.name }) + "\n"); process.exit(code); };
setTimeout(() => done(1, "timeout"), 10000);
socket.on("open", () => {
  socket.send("hello");
  socket.send(Buffer.from([1, 2, 3]));
});
socket.on("message", (data) => {
  got.push(typeof data === "string" ? data : Array.from(Buffer.from(data)));
  if (got.length === 2) {
    const ok = got[0] === "hello" && JSON.stringify(got[1]) === "[1,2,3]";
    done(ok ? 0 : 1, ok ? "echoed" : "mismatch");
  }
});
socket.on("error", (e) => done(1, "error " + e));
