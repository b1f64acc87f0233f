// Node business servers' HTTP clients against Herald, for the hostile-client suite.
// Usage: node http_node.js '<{"lib": "node-fetch"|"undici", "url", "path", "method", "body"?, "n"}>'
// node-fetch 2: `n` sequential requests with `Connection: close` (what node-fetch sends
// without an agent) on a keep-alive agent, which pools a socket unless the answer says close. undici: one Client with pipelining 10, `n` requests at once,
// then `n` one after the other on the same connection.
// Prints one line: {"ok": <answers with a 2xx status>, "errors": [...], "connects": <sockets>}.
"use strict";
const opts = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const errors = [];
const init = () => {
  const o = { method: opts.method || "GET", headers: {} };
  if (opts.body !== undefined) {
    o.headers["content-type"] = "application/json";
    o.body = JSON.stringify(opts.body);
  }
  return o;
};

async function nodeFetch() {
  const fetch = require("node-fetch");
  const agent = new (require("http").Agent)({ keepAlive: true });
  let ok = 0;
  for (let i = 0; i < opts.n; i++) {
    try {
      const o = init();
      o.agent = agent;
      o.headers.connection = "close";
      const res = await fetch(opts.url + opts.path, o);
      await res.text();
      if (res.ok) ok++; else errors.push(`status ${res.status}`);
    } catch (e) {
      errors.push(String(e.message || e));
    }
  }
  return { ok, errors };
}

async function undici() {
  const { Client } = require("undici");
  const client = new Client(opts.url, { pipelining: 10 });
  let connects = 0;
  client.on("connect", () => connects++);
  let ok = 0;
  const one = async () => {
    try {
      const o = init();
      const res = await client.request({ path: opts.path, method: o.method, headers: o.headers, body: o.body });
      await res.body.text();
      if (res.statusCode >= 200 && res.statusCode < 300) ok++; else errors.push(`status ${res.statusCode}`);
    } catch (e) {
      errors.push(String(e.message || e));
    }
  };
  await Promise.all(Array.from({ length: opts.n }, one));
  for (let i = 0; i < opts.n; i++) await one();
  await client.close();
  return { ok, errors, connects };
}

(opts.lib === "undici" ? undici() : nodeFetch())
  .then((r) => { out(r); process.exit(0); })
  .catch((e) => { out({ ok: 0, errors: [String(e)] }); process.exit(1); });
