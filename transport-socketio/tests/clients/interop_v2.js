// Interop checks with socket.io-client 2.x or 1.4 (Engine.IO v3; 1.4 is what xiucall-push's
// clients used) against the echo example.
// Usage: node interop_v2.js <url> <transports: websocket | polling> <namespace> [package]
//   package: the npm name the client is installed under (default socket.io-client-v2).
// Prints one JSON object with what happened; exits 0 when every check passed.
"use strict";
const [url, mode, nsp, pkg = "socket.io-client-v2"] = process.argv.slice(2);
const io = require(pkg);
const transports = mode === "websocket" ? ["websocket"] : ["polling", "websocket"];
const result = { checks: {}, version: require(pkg + "/package.json").version };
const done = (code) => { process.stdout.write(JSON.stringify(result) + "\n"); process.exit(code); };
setTimeout(() => { result.error = "timeout"; done(1); }, 15000);
const expect = (name, ok) => { result.checks[name] = !!ok; };
const opts = (extra) => Object.assign({ transports, reconnection: false, forceNew: true }, extra);

const socket = io(url + (nsp === "/" ? "" : nsp), opts({}));
socket.on("connect_error", (e) => { result.error = "connect_error " + e; done(1); });
socket.on("error", (e) => { result.error = "error " + JSON.stringify(e); done(1); });
socket.io.on("open", () => { result.initial = socket.io.engine.transport.name; });
socket.on("auth", (a) => {
  expect("no auth payload in v3", a && Object.keys(a).length === 0);
  socket.emit("message", 1, "two", { three: 3 }, Buffer.from([1, 2, 3]));
});
socket.on("message-back", (...args) => {
  expect("message echoed", args[0] === 1 && args[1] === "two" && args[2].three === 3);
  expect("binary echoed", Buffer.isBuffer(args[3]) && args[3].equals(Buffer.from([1, 2, 3])));
  socket.emit("message-with-ack", "x", (...answer) => {
    expect("ack args", answer[0] === "x");
    result.transport = socket.io.engine.transport.name;
    expect("started on the requested transport", result.initial === transports[0]);
    // A refused connection: socket.io 2.x reports it as an `error` event.
    const refused = io(url, opts({ query: { refuse: "true" } }));
    refused.on("connect", () => { expect("refused", false); done(1); });
    refused.once("error", (e) => {
      expect("refused", e && e.message === "refused");
      // Unknown namespace: socket.io 2.x servers say it with a bare string.
      const unknown = io(url + "/nope", opts({}));
      unknown.once("error", (e2) => {
        expect("unknown namespace", e2 === "Invalid namespace");
        // The server's heartbeat: v3 clients ping, the server answers.
        socket.io.engine.once("pong", () => {
          expect("pong", true);
          const ok = Object.values(result.checks).every(Boolean);
          socket.close(); refused.close(); unknown.close();
          done(ok ? 0 : 1);
        });
      });
    });
  });
});
