// Interop checks with the official socket.io-client against the echo example.
// Usage: node interop.js <url> <transports: websocket | polling> <namespace>
// Prints one JSON object with what happened; exits 0 when every check passed.
"use strict";
const { io } = require("socket.io-client");

const [url, mode, nsp] = process.argv.slice(2);
const transports = mode === "websocket" ? ["websocket"] : ["polling", "websocket"];
const result = { checks: {} };
const done = (code) => { process.stdout.write(JSON.stringify(result) + "\n"); process.exit(code); };
setTimeout(() => { result.error = "timeout"; done(1); }, 15000);

const auth = { token: "abc", n: 1 };
const socket = io(url + (nsp === "/" ? "" : nsp), { auth, transports, reconnection: false, forceNew: true });
const expect = (name, ok) => { result.checks[name] = !!ok; };

socket.on("connect_error", (e) => { result.error = "connect_error " + e.message; done(1); });
socket.io.on("open", () => { result.initial = socket.io.engine.transport.name; });
socket.on("auth", (a) => {
  expect("auth echoed", a && a.token === auth.token && a.n === auth.n && Object.keys(a).length === 2);
  socket.emit("message", 1, "two", { three: 3 }, Buffer.from([1, 2, 3]));
});
socket.on("message-back", async (...args) => {
  expect("message echoed", args[0] === 1 && args[1] === "two" && args[2].three === 3);
  expect("binary echoed", Buffer.isBuffer(args[3]) && args[3].equals(Buffer.from([1, 2, 3])));
  const answer = await socket.timeout(5000).emitWithAck("message-with-ack", "x", Buffer.from([9]));
  expect("ack answered", Array.isArray(answer) || answer === "x");
  const echoed = Array.isArray(answer) ? answer : [answer];
  expect("ack args", echoed[0] === "x");
  result.transport = socket.io.engine.transport.name;
  expect("started on the requested transport", result.initial === transports[0]);
  // Refused connect on a second socket.
  const refused = io(url, { auth: { refuse: true }, transports, reconnection: false, forceNew: true });
  refused.on("connect", () => { expect("refused", false); done(1); });
  refused.on("connect_error", (e) => {
    expect("refused", e.message === "refused");
    // Unknown namespace.
    const unknown = io(url + "/nope", { transports, reconnection: false, forceNew: true });
    unknown.on("connect_error", (e2) => {
      expect("unknown namespace", e2.message === "Invalid namespace");
      const ok = Object.values(result.checks).every(Boolean);
      socket.disconnect(); refused.disconnect(); unknown.disconnect();
      done(ok ? 0 : 1);
    });
  });
});
