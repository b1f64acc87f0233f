// Drives Debian's chromium (headless, through puppeteer-core) as a Socket.IO client of Herald.
// A page of its own origin (a small HTTP server here, on args.page_port) loads the official
// socket.io-client browser bundle from node_modules and connects to args.connector, another
// origin. For each run: connect, push a message through the REST API, see it arrive, acknowledge
// it (the client's ack callback), wait until the server holds nothing unacknowledged (GET
// /watch), disconnect, poll the ended session (its error answer must reach the page), connect again, push a second message and see only that one arrive.
// Prints one JSON line: what each run received, what the browser logged as errors (CORS
// failures show there), and every answer with an error status with its CORS header (a poll
// still waiting when the client disconnects is answered 400: the session is gone).
//
// args: {connector, api, page_port, chromium, runs: [{client, auth, transports, withCredentials}]}
const http = require("http");
const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

const args = JSON.parse(process.argv[2]);
const WAIT_MS = 20000;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>herald browser client</title>
<script src="/socket.io.min.js"></script>
<script>
window.herald = {
  got: [],
  connect(url, opts) {
    return new Promise((resolve, reject) => {
      const s = io(url, Object.assign({ reconnection: false, forceNew: true }, opts));
      window.herald.socket = s;
      window.herald.got = [];
      s.on("message", (batch, ack) => {
        window.herald.got.push(...batch);
        if (ack) ack();
      });
      s.on("connect", () => resolve(s.io.engine.transport.name));
      s.on("connect_error", (e) => reject(new Error("connect_error: " + e.message)));
    });
  },
  received() { return window.herald.got.map((m) => m.data); },
  transport() { return window.herald.socket.io.engine.transport.name; },
  sid() { return window.herald.socket.io.engine.id; },
  // A poll of a session that has ended, as a client that has not noticed yet sends it: its
  // status, or the error the browser gave instead (a CORS refusal: "Failed to fetch").
  async poll(url, sid, credentials) {
    try {
      const r = await fetch(url + "/socket.io/?EIO=4&transport=polling&sid=" + sid,
        { credentials: credentials ? "include" : "omit" });
      return r.status;
    } catch (e) {
      return String(e);
    }
  },
  close() { window.herald.socket.disconnect(); },
};
</script></head><body>herald browser client</body></html>`;

function servePage() {
  // The package's "exports" hide dist/; its package.json is exported and sits beside it.
  const pkg = require.resolve("socket.io-client/package.json");
  const bundle = fs.readFileSync(path.join(path.dirname(pkg), "dist", "socket.io.min.js"));
  const server = http.createServer((req, res) => {
    if (req.url === "/socket.io.min.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(bundle);
    } else if (req.url === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(PAGE);
    } else if (req.url === "/favicon.ico") {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(args.page_port, "127.0.0.1", () => resolve(server)));
}

async function until(what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function push(client, data) {
  const res = await fetch(`${args.api}/push`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ send_id: "browser-test", channel: ["t"], recv_id: [client], data }),
  });
  if (res.status !== 200) throw new Error(`push answered ${res.status}: ${await res.text()}`);
}

async function unacknowledged(client, slot) {
  const res = await fetch(`${args.api}/watch/${encodeURIComponent(client)}?channel=${slot}&timeout=0`);
  return (await res.json()).message;
}

async function run(page, r) {
  const opts = { auth: r.auth, transports: r.transports, withCredentials: !!r.withCredentials };
  const hasN = (n) => async () => (await page.evaluate(() => herald.received())).some((d) => d.n === n);
  await page.evaluate((url, o) => herald.connect(url, o), args.connector, opts);
  await push(r.client, { n: 1 });
  await until("the first message", hasN(1));
  const first = await page.evaluate(() => herald.received());
  const transport = await page.evaluate(() => herald.transport());
  await until("the first message's acknowledgement", async () =>
    (await unacknowledged(r.client, r.auth.slot || 0)) === null);
  const sid = await page.evaluate(() => herald.sid());
  await page.evaluate(() => herald.close());
  const ended = await page.evaluate((url, id, c) => herald.poll(url, id, c), args.connector, sid,
    opts.withCredentials);
  await page.evaluate((url, o) => herald.connect(url, o), args.connector, opts);
  await push(r.client, { n: 2 });
  await until("the second message", hasN(2));
  const second = await page.evaluate(() => herald.received());
  await page.evaluate(() => herald.close());
  return { client: r.client, transport, first, second, ended };
}

(async () => {
  const server = await servePage();
  const browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const errors = [];
  const refused = [];
  const out = { runs: [], errors, refused };
  try {
    const page = await browser.newPage();
    // An answer with an error status is logged by the browser as a console error; those are
    // listed in `refused` with their CORS header instead (the browser only lets the client see
    // the status when the header is there).
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
    });
    page.on("response", (res) => {
      if (res.status() >= 400) {
        const allow = res.headers()["access-control-allow-origin"] || null;
        refused.push({ url: res.url(), status: res.status(), allow_origin: allow });
      }
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("requestfailed", (req) => {
      // A connection the client itself closed on disconnect is not a failure.
      const why = req.failure() ? req.failure().errorText : "";
      if (why !== "net::ERR_ABORTED") errors.push(`${req.method()} ${req.url()}: ${why}`);
    });
    await page.goto(`http://127.0.0.1:${args.page_port}/`);
    for (const r of args.runs) out.runs.push(await run(page, r));
  } catch (e) {
    out.error = String(e && e.stack || e);
  } finally {
    await browser.close();
    server.close();
  }
  console.log(JSON.stringify(out));
})();
