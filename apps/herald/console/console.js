// Herald's web console. No framework and no build step: this file is embedded in the binary
// as it is. Every figure comes from the node's REST API, called with the API key kept in
// this tab's sessionStorage. Data from the server is only ever set as text, never as HTML.
"use strict";

const KEY = "herald.apiKey";
const POLL_MS = 2000;
const HISTORY = 150; // points per chart: five minutes at one point every two seconds
const $ = (id) => document.getElementById(id);

function headers() {
  const key = sessionStorage.getItem(KEY) || "";
  return key ? { authorization: "Bearer " + key } : {};
}

async function api(path, init) {
  const res = await fetch(path, Object.assign({ headers: headers() }, init || {}));
  if (res.status === 401) {
    logout("The API key was refused.");
    throw new Error("unauthorized");
  }
  return res;
}

// ---- login ----------------------------------------------------------------------------

function show(page) {
  for (const id of ["login", "overview", "client", "pushes"]) $(id).hidden = id !== page;
  $("nav").hidden = page === "login";
  for (const b of document.querySelectorAll("nav button[data-page]")) {
    b.classList.toggle("current", b.dataset.page === page);
  }
}

function logout(why) {
  sessionStorage.removeItem(KEY);
  stopOverview();
  $("login-error").textContent = why || "";
  show("login");
}

async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value);
  $("key").value = "";
  const res = await fetch("/apis", { headers: headers() }).catch(() => null);
  if (!res || res.status !== 200) {
    logout(res ? "The API key was refused." : "The node did not answer.");
    return;
  }
  $("login-error").textContent = "";
  openPage("overview");
}

function openPage(page) {
  show(page);
  if (page === "overview") startOverview(); else stopOverview();
}

// ---- overview -------------------------------------------------------------------------

// Parses the Prometheus text of /metrics into [{name, labels, value}].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

// The figures shown: a gauge (`now`) or the per-second rate of counters, or the mean of a
// histogram over the last interval (`latency`), summed over every node.
const FIGURES = [
  { title: "connections", kind: "now", metrics: ["herald_connections"] },
  { title: "sessions", kind: "now", metrics: ["herald_sessions"] },
  { title: "pushes/s", kind: "rate", metrics: ["herald_push_requests_total"] },
  { title: "messages pushed/s", kind: "rate", metrics: ["herald_pushed_messages_total"] },
  { title: "deliveries/s", kind: "rate", metrics: ["herald_deliveries_total"] },
  { title: "acks/s", kind: "rate", metrics: ["herald_acks_total"] },
  { title: "store latency (ms)", kind: "latency", metrics: ["herald_store_latency_seconds"] },
  { title: "broker latency (ms)", kind: "latency", metrics: ["herald_broker_latency_seconds"] },
  {
    title: "errors/s", kind: "rate",
    metrics: ["herald_store_errors_total", "herald_broker_errors_total",
      "herald_auth_failures_total", "herald_push_rejected_total"],
  },
];

let timer = null;
let previous = null; // {at, sums}
const series = FIGURES.map(() => []);

function sum(samples, name) {
  return samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
}

function byNode(samples, name) {
  const out = {};
  for (const s of samples) if (s.name === name) out[s.labels.node || "-"] = (out[s.labels.node || "-"] || 0) + s.value;
  return out;
}

async function tick() {
  let res;
  try {
    res = await api("/metrics");
  } catch (e) {
    return;
  }
  const samples = parseMetrics(await res.text());
  const at = Date.now();
  const sums = {};
  for (const s of samples) sums[s.name] = (sums[s.name] || 0) + s.value;
  FIGURES.forEach((f, i) => {
    let v = null;
    if (f.kind === "now") {
      v = f.metrics.reduce((a, m) => a + sum(samples, m), 0);
    } else if (previous && f.kind === "rate") {
      const dt = (at - previous.at) / 1000;
      v = f.metrics.reduce((a, m) => a + ((sums[m] || 0) - (previous.sums[m] || 0)), 0) / dt;
    } else if (previous && f.kind === "latency") {
      const m = f.metrics[0];
      const n = (sums[m + "_count"] || 0) - (previous.sums[m + "_count"] || 0);
      const s = (sums[m + "_sum"] || 0) - (previous.sums[m + "_sum"] || 0);
      v = n > 0 ? (s / n) * 1000 : 0;
    }
    if (v !== null) {
      series[i].push(Math.max(0, v));
      if (series[i].length > HISTORY) series[i].shift();
    }
  });
  previous = { at, sums };
  drawCharts();
  drawNodes(samples);
  $("updated").textContent = "updated " + new Date(at).toLocaleTimeString();
}

function drawCharts() {
  const box = $("charts");
  if (box.children.length !== FIGURES.length) {
    box.textContent = "";
    for (const f of FIGURES) {
      const div = document.createElement("div");
      div.className = "chart";
      div.innerHTML = '<div class="name"></div><div class="value">-</div>' +
        '<svg viewBox="0 0 ' + HISTORY + ' 40" preserveAspectRatio="none"><polyline></polyline></svg>';
      div.querySelector(".name").textContent = f.title;
      box.appendChild(div);
    }
  }
  FIGURES.forEach((f, i) => {
    const div = box.children[i];
    const s = series[i];
    const last = s.length ? s[s.length - 1] : null;
    div.querySelector(".value").textContent = last === null ? "-" :
      (Number.isInteger(last) ? String(last) : last.toFixed(2));
    const max = Math.max(1e-9, ...s);
    const points = s.map((v, x) => (x + HISTORY - s.length) + "," + (39 - (v / max) * 38).toFixed(1));
    div.querySelector("polyline").setAttribute("points", points.join(" "));
  });
}

function drawNodes(samples) {
  const cols = [
    "herald_connections", "herald_sessions", "herald_push_requests_total",
    "herald_deliveries_total", "herald_acks_total",
  ];
  const per = cols.map((c) => byNode(samples, c));
  const errs = ["herald_store_errors_total", "herald_broker_errors_total"].map((c) => byNode(samples, c));
  const nodes = new Set(per.flatMap((p) => Object.keys(p)));
  const body = $("nodes").querySelector("tbody");
  body.textContent = "";
  for (const node of [...nodes].sort()) {
    const tr = document.createElement("tr");
    const cells = [node, ...per.map((p) => p[node] || 0), errs.reduce((a, e) => a + (e[node] || 0), 0)];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = String(c);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function startOverview() {
  if (timer) return;
  tick();
  timer = setInterval(tick, POLL_MS);
}

function stopOverview() {
  if (timer) clearInterval(timer);
  timer = null;
}

// ---- client ---------------------------------------------------------------------------

function clientPath(route) {
  return "/" + route + "/" + encodeURIComponent($("client-id").value.trim());
}

function slot() {
  return Number($("client-slot").value || 0);
}

async function errorText(res) {
  try {
    const body = await res.json();
    return (body.errors || []).join("; ") || ("status " + res.status);
  } catch (e) {
    return "status " + res.status;
  }
}

async function oldestUnacked() {
  const res = await api(clientPath("watch") + "?channel=" + slot() + "&timeout=0");
  if (res.status !== 200) throw new Error(await errorText(res));
  return (await res.json()).message;
}

async function lastMessages() {
  const since = Math.floor(Date.now() / 1000) - 3600;
  let after = 0;
  let all = [];
  for (;;) {
    const res = await api(clientPath("queues") + "?since=" + since + "&limit=1000&after=" + after);
    if (res.status !== 200) throw new Error(await errorText(res));
    const body = await res.json();
    all = all.concat(body.messages).slice(-20);
    if (!body.more || body.messages.length === 0) return all.reverse();
    after = body.messages[body.messages.length - 1].id;
  }
}

// The client view (GET /clients/:id): sessions online on any node, and per slot the queue
// depth, the oldest unacknowledged message's time and the last acknowledged id.
async function clientView() {
  const res = await api(clientPath("clients"));
  if (res.status !== 200) throw new Error(await errorText(res));
  const view = await res.json();
  fillTable($("sessions"), view.sessions.map((s) => [s.slot, s.node, time(s.since)]),
    "No session online.");
  fillTable($("slots"), view.slots.map((s) => [s.slot, s.unacked, time(s.oldest_unacked_ts),
    s.last_acked === null ? "-" : "#" + s.last_acked]), "No slot has read this queue.");
}

function fillTable(table, rows, empty) {
  const body = table.querySelector("tbody");
  body.textContent = "";
  if (rows.length === 0) {
    const td = document.createElement("td");
    td.className = "none";
    td.colSpan = table.querySelectorAll("th").length;
    td.textContent = empty;
    body.appendChild(document.createElement("tr")).appendChild(td);
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const c of row) {
      const td = document.createElement("td");
      td.textContent = String(c);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function render(target, value) {
  target.textContent = value === null ? "none: every message is acknowledged" : JSON.stringify(value, null, 2);
}

async function lookup(event) {
  if (event) event.preventDefault();
  $("client-error").textContent = "";
  try {
    await clientView();
    render($("oldest"), await oldestUnacked());
    const list = $("messages");
    list.textContent = "";
    const messages = await lastMessages();
    if (messages.length === 0) list.textContent = "No message in the last hour.";
    for (const m of messages) {
      const div = document.createElement("div");
      div.className = "message";
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = "#" + m.id + " from " + m.from + " at " + new Date(m.ts).toISOString() +
        " channel " + JSON.stringify(m.channel);
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(m.data, null, 2);
      div.append(meta, pre);
      list.appendChild(div);
    }
    $("push-test").disabled = false;
  } catch (e) {
    if (e.message !== "unauthorized") $("client-error").textContent = e.message;
  }
}

// Pushes a test message to the client, then follows it: stored (its id found in the queue),
// then acknowledged by the slot (the slot's oldest unacknowledged message is past it).
async function pushTest() {
  const status = $("push-status");
  const marker = "console-" + Date.now();
  $("push-open").hidden = true;
  const res = await api("/push", {
    method: "POST",
    headers: Object.assign({ "content-type": "application/json" }, headers()),
    body: JSON.stringify({
      send_id: "console", channel: ["console"], recv_id: [$("client-id").value.trim()],
      data: { console_test: marker },
    }),
  });
  if (res.status !== 200) {
    status.textContent = "Push refused: " + (await errorText(res));
    return;
  }
  lastPushId = (await res.json()).push_id || "";
  $("push-open").hidden = !lastPushId;
  const found = (await lastMessages()).find((m) => m.data && m.data.console_test === marker);
  if (!found) {
    status.textContent = "Pushed, but not found in the queue.";
    return;
  }
  status.textContent = "Message #" + found.id + " (push " + lastPushId + ") stored; waiting for slot " + slot() + " to acknowledge it.";
  await lookup();
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    const oldest = await oldestUnacked();
    if (oldest === null || oldest.id > found.id) {
      status.textContent = "Message #" + found.id + " delivered and acknowledged by slot " + slot() + ".";
      render($("oldest"), oldest);
      await clientView();
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  status.textContent = "Message #" + found.id + " is not acknowledged yet (is the client online?).";
}

// ---- pushes ---------------------------------------------------------------------------

const PUSH_PAGE = 100; // recipients per page of GET /push/:id
let lastPushId = ""; // the push id of the client page's last test message
let pushNext = null; // the `after` cursor of the next page, when there is one

function time(ms) {
  return ms === null || ms === undefined ? "-" : new Date(ms).toISOString();
}

// Reads one page of the push's status (GET /push/:id); the first page replaces the table.
async function pushPage(first) {
  const id = $("push-id").value.trim();
  let path = "/push/" + encodeURIComponent(id) + "?slot=" + Number($("push-slot").value || 0) +
    "&limit=" + PUSH_PAGE;
  if (!first && pushNext !== null) path += "&after=" + encodeURIComponent(pushNext);
  const res = await api(path);
  if (res.status !== 200) throw new Error(await errorText(res));
  const st = await res.json();
  $("push-meta").textContent = "Push " + st.push_id + ", stored " + time(st.ts) + ", expires " +
    time(st.expires_at) + "; slot " + st.slot + ".";
  const s = st.summary;
  fillTable($("push-summary"), [[st.recipients, s.stored, s.delivered, s.acked, s.expired,
    s.recalled]], "");
  const rows = st.entries.map((e) => [e.client, "#" + e.id, e.state, time(e.delivered_at),
    time(e.acked_at)]);
  const body = $("push-entries").querySelector("tbody");
  if (first) fillTable($("push-entries"), rows, "No recipient.");
  else for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of r) tr.appendChild(document.createElement("td")).textContent = String(c);
    body.appendChild(tr);
  }
  pushNext = st.next === undefined ? null : st.next;
  $("push-more").hidden = pushNext === null;
  $("push-recall").disabled = false;
}

async function pushLookup(event) {
  if (event) event.preventDefault();
  $("push-error").textContent = "";
  $("push-recall").disabled = true;
  try {
    await pushPage(true);
  } catch (e) {
    if (e.message !== "unauthorized") $("push-error").textContent = e.message;
  }
}

// DELETE /push/:id after a confirmation: every copy not yet acknowledged is recalled.
async function pushRecall() {
  const id = $("push-id").value.trim();
  if (!window.confirm("Recall push " + id + "? Copies not yet acknowledged will not be delivered.")) return;
  const res = await api("/push/" + encodeURIComponent(id), { method: "DELETE" });
  if (res.status !== 200) {
    $("push-error").textContent = "Recall refused: " + (await errorText(res));
    return;
  }
  const r = await res.json();
  await pushLookup();
  $("push-error").textContent = "";
  $("push-meta").textContent += " Recalled: " + r.recalled + " copies; already acknowledged: " +
    r.already_acked + ".";
}

function openPush(id) {
  $("push-id").value = id;
  openPage("pushes");
  pushLookup();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("lookup-form").addEventListener("submit", lookup);
  $("push-test").addEventListener("click", () => pushTest().catch((e) => {
    $("push-status").textContent = e.message;
  }));
  $("logout").addEventListener("click", () => logout(""));
  $("push-form").addEventListener("submit", pushLookup);
  $("push-recall").addEventListener("click", () => pushRecall().catch((e) => {
    $("push-error").textContent = e.message;
  }));
  $("push-more").addEventListener("click", () => pushPage(false).catch((e) => {
    $("push-error").textContent = e.message;
  }));
  $("push-open").addEventListener("click", () => openPush(lastPushId));
  for (const b of document.querySelectorAll("nav button[data-page]")) {
    b.addEventListener("click", () => openPage(b.dataset.page));
  }
  if (sessionStorage.getItem(KEY) !== null) openPage("overview"); else show("login");
});
