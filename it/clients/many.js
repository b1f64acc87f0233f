// The seed's load scenario: N commit-mode clients that commit every message as it arrives.
// Usage: node many.js '<{"url", "auths":[auth...], "expect": messages per client}>'
// Prints {"ready":true} once every client got its empty first message, then one final
// {"received":{client:[ids...]}} when every client has `expect` messages (or after 30 s).
"use strict";
const { io } = require("socket.io-client");
const opts = JSON.parse(process.argv[2]);
const received = {};
let ready = 0;
let finished = false;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const check = () => {
  const all = opts.auths.every((a) => (received[a.client_id] || []).length >= opts.expect);
  if (all && !finished) { finished = true; out({ received }); process.exit(0); }
};
setTimeout(() => { out({ received, timeout: true }); process.exit(1); }, 30000);
for (const auth of opts.auths) {
  received[auth.client_id] = [];
  const s = io(opts.url, { auth, transports: ["websocket"], reconnection: false, forceNew: true });
  let first = true;
  s.on("message", (batch) => {
    if (first && batch.length === 0) {
      first = false;
      if (++ready === opts.auths.length) out({ ready: true });
      s.emit("commit", 0);
      return;
    }
    for (const m of batch) received[auth.client_id].push(m.id);
    s.emit("commit", batch.length);
    check();
  });
  s.on("connect_error", (e) => { out({ error: e.message }); process.exit(1); });
}
