#!/usr/bin/env python3
"""Turns herald-bench's JSON lines (one per run) into docs/benchmarks.md: medians with
min-max over the repetitions, and each target of issue 6 checked as met or not.

Usage: report.py RESULTS.jsonl OUT.md --started ... --rev ... --versions ... --machine ...
       --command ... --settings ...
The hand-written analysis in scripts/bench/analysis.md is appended as it is."""
import argparse
import json
import os
import statistics
from collections import defaultdict

MAIN = ["herald", "socketio-node", "socketioxide", "socketioxide-ack"]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def qualifies(r, p99_ms=100):
    """A push run that kept up: nothing lost, p99 under 100 ms, 95% of the offered rate."""
    return (r.get("lost") == 0 and r["latency_ms"]["p99"] < p99_ms
            and r["requests_per_s"] >= 0.95 * r["rate"])


# The sustained rate (MongoDB setups): kept up with p99 under a second.
SUSTAINED_P99_MS = 1000


def per_rep(rows):
    """{server: {metric: [value per repetition]}}"""
    out = defaultdict(lambda: defaultdict(list))
    # {(server, rep): {metric: value}}: the figures one repetition's ratios are taken from.
    one = defaultdict(dict)
    by = defaultdict(list)
    for r in rows:
        if "error" in r:
            continue
        by[(r["server"], r.get("rep", 1), r["scenario"], r.get("batch"))].append(r)
    for (server, rep, scen, batch), rs in sorted(by.items(), key=lambda kv: str(kv[0])):
        m = out[server]
        if scen == "bound":
            r = rs[-1]
            for kind, key in (("insert_many", "insert"), ("append_round_trips", "append"),
                              ("ack_update", "ack")):
                m[f"bound{batch}_{key}"].append(r[kind]["per_s"])
                one[(server, rep)][f"bound{batch}_{key}"] = r[kind]["per_s"]
        elif scen == "idle":
            r = rs[-1]
            m["idle_connected"].append(r["still_open"])
            m["idle_connect_per_s"].append(r["connect_per_s"])
            if r.get("rss_per_conn_kb") is not None:
                m["idle_rss_kb"].append(r["rss_per_conn_kb"])
            m["idle_lost"].append(r["conns"] - r["still_open"])
        elif scen == "fanout":
            r = rs[-1]
            m["fanout_conns"].append(r["connected"])
            m["fanout_round_ms"].append(r["round_ms_median"])
            m["fanout_p50"].append(r["latency_ms"]["p50"])
            m["fanout_p99"].append(r["latency_ms"]["p99"])
            m["fanout_lost"].append(r["lost"])
            if r.get("db_ops") is not None:
                m["fanout_ops_per_round"].append(r["db_ops"] / max(r["rounds"], 1))
            if r.get("server_cpu") is not None:
                m["fanout_server_cpu"].append(r["server_cpu"])
        elif scen == "push":
            good = [r for r in rs if qualifies(r)]
            key = f"b{batch}"
            m[f"{key}_lost"].append(sum(r["lost"] for r in rs))
            if good:
                best = max(good, key=lambda r: r["rate"])
                m[f"{key}_rate"].append(best["rate"])
                m[f"{key}_delivered"].append(best["delivered_per_s"])
                m[f"{key}_p50"].append(best["latency_ms"]["p50"])
                m[f"{key}_p99"].append(best["latency_ms"]["p99"])
                # Work per server CPU-second there: delivered messages (B=100), requests (B=1).
                cpu = best.get("server_cpu")
                if cpu:
                    done = best["delivered_per_s"] if batch != 1 else best["requests_per_s"]
                    m[f"{key}_per_cpu"].append(done / cpu)
                if best.get("db_ops") is not None and best.get("requests_ok"):
                    m[f"{key}_ops_per_req"].append(best["db_ops"] / best["requests_ok"])
                one[(server, rep)][f"{key}_rate"] = best["rate"]
            else:
                one[(server, rep)][f"{key}_rate"] = 0
                m[f"{key}_rate"].append(0)
                m[f"{key}_delivered"].append(0)
            held = [r for r in rs if qualifies(r, SUSTAINED_P99_MS)]
            top = max(held, key=lambda r: r["rate"]) if held else None
            m[f"{key}_sustained"].append(top["rate"] if top else 0)
            one[(server, rep)][f"{key}_sustained"] = top["rate"] if top else 0
            if top:
                m[f"{key}_sustained_p99"].append(top["latency_ms"]["p99"])
            low = min(rs, key=lambda r: r["rate"])
            m[f"{key}_low_rate"].append(low["rate"])
            m[f"{key}_low_delivered"].append(low["delivered_per_s"])
            m[f"{key}_low_p99"].append(low["latency_ms"]["p99"])
            past = [r for r in rs if not qualifies(r)]
            if past:
                first = min(past, key=lambda r: r["rate"])
                m[f"{key}_fail_rate"].append(first["rate"])
                if first.get("server_cpu") is not None:
                    m[f"{key}_fail_server_cpu"].append(first["server_cpu"])
                if first.get("bench_cpu") is not None:
                    m[f"{key}_fail_bench_cpu"].append(first["bench_cpu"])
            if any(r.get("acks", 0) > 0 for r in rs):
                m[f"{key}_acked"].append(1)
    # Herald's best rate as a share of the database's bound measured in the same repetition.
    for (server, _), f in sorted(one.items(), key=lambda kv: str(kv[0])):
        for b in (100, 1):
            for kind in ("rate", "sustained"):
                rate = f.get(f"b{b}_{kind}")
                for key in ("insert", "append"):
                    bound = f.get(f"bound{b}_{key}")
                    if rate is not None and bound:
                        out[server][f"b{b}_{kind}_share_{key}"].append(rate / bound)
    return out


class Rate:
    """A requests/s figure: whole numbers with separators, below 10 one decimal (0.5/s)."""

    @staticmethod
    def format(v):
        return f"{v:,.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


def cell(values, fmt="{:,.0f}"):
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


ROWS = [
    ("idle", "connections held (of those opened)", "idle_connected", "{:,.0f}"),
    ("idle", "connects/s", "idle_connect_per_s", "{:,.0f}"),
    ("idle", "server RSS per idle connection, KiB", "idle_rss_kb", "{:,.1f}"),
    ("idle", "connections lost while held", "idle_lost", "{:,.0f}"),
    ("push B=100", "best rate with p99 < 100 ms, requests/s", "b100_rate", Rate),
    ("push B=100", "delivered messages/s at that rate", "b100_delivered", "{:,.0f}"),
    ("push B=100", "latency p50 / p99 at that rate, ms", ("b100_p50", "b100_p99"), "{:,.1f}"),
    ("push B=100", "there: delivered messages per server CPU-second", "b100_per_cpu", "{:,.0f}"),
    ("push B=100", "first rate past it, requests/s", "b100_fail_rate", Rate),
    ("push B=100", "server / load generator CPU there, cores", ("b100_fail_server_cpu", "b100_fail_bench_cpu"), "{:,.2f}"),
    ("push B=100", "messages lost (all rates)", "b100_lost", "{:,.0f}"),
    ("push B=1", "saturation: best rate with p99 < 100 ms, requests/s", "b1_rate", Rate),
    ("push B=1", "latency p50 / p99 at that rate, ms", ("b1_p50", "b1_p99"), "{:,.1f}"),
    ("push B=1", "there: requests per server CPU-second", "b1_per_cpu", "{:,.0f}"),
    ("push B=1", "first rate past it, requests/s", "b1_fail_rate", Rate),
    ("push B=1", "server / load generator CPU there, cores", ("b1_fail_server_cpu", "b1_fail_bench_cpu"), "{:,.2f}"),
    ("push B=1", "messages lost (all rates)", "b1_lost", "{:,.0f}"),
    ("fanout", "clients", "fanout_conns", "{:,.0f}"),
    ("fanout", "time until all received (median round), ms", "fanout_round_ms", "{:,.1f}"),
    ("fanout", "per-client latency p50 / p99, ms", ("fanout_p50", "fanout_p99"), "{:,.1f}"),
    ("fanout", "server CPU over the rounds and the pauses between them, cores", "fanout_server_cpu", "{:,.2f}"),
    ("fanout", "messages lost", "fanout_lost", "{:,.0f}"),
]


# For the slower setups (MongoDB), whose best rate may be none of those tried.
LOW_ROWS = [
    ("push B=100", "lowest rate tried, requests/s", "b100_low_rate", Rate),
    ("push B=100", "there: delivered messages/s / p99 ms", ("b100_low_delivered", "b100_low_p99"), "{:,.0f}"),
    ("push B=1", "lowest rate tried, requests/s", "b1_low_rate", Rate),
    ("push B=1", "there: delivered messages/s / p99 ms", ("b1_low_delivered", "b1_low_p99"), "{:,.0f}"),
]


# The database's own bound and Herald's share of it (the MongoDB and cluster setups).
DB_ROWS = [
    ("bound B=100", "raw `insert_many` of 100 copies, calls/s", "bound100_insert", Rate),
    ("bound B=100", "raw append round trips for 100 recipients (`update` + `find` + `insert_many`), calls/s", "bound100_append", Rate),
    ("bound B=100", "raw acknowledgement `update` of 100 statements, calls/s", "bound100_ack", Rate),
    ("bound B=1", "raw `insert_many` of 1 copy, calls/s", "bound1_insert", Rate),
    ("bound B=1", "raw append round trips for 1 recipient, calls/s", "bound1_append", Rate),
    ("bound B=1", "raw acknowledgement `update` of 1 statement, calls/s", "bound1_ack", Rate),
    ("push B=100", "best rate (p99 < 100 ms) / raw `insert_many(100)` bound", "b100_rate_share_insert", "{:.2f}"),
    ("push B=100", "sustained rate: highest with p99 < 1 s, nothing lost, requests/s", "b100_sustained", Rate),
    ("push B=100", "p99 there, ms", "b100_sustained_p99", "{:,.0f}"),
    ("push B=100", "sustained rate / raw `insert_many(100)` bound", "b100_sustained_share_insert", "{:.2f}"),
    ("push B=100", "sustained rate / raw append round trips bound", "b100_sustained_share_append", "{:.2f}"),
    ("push B=100", "database operations per request at the best rate (pushes, acks)", "b100_ops_per_req", "{:,.2f}"),
    ("push B=1", "best rate (p99 < 100 ms) / raw `insert_many(1)` bound", "b1_rate_share_insert", "{:.2f}"),
    ("push B=1", "sustained rate: highest with p99 < 1 s, nothing lost, requests/s", "b1_sustained", Rate),
    ("push B=1", "p99 there, ms", "b1_sustained_p99", "{:,.0f}"),
    ("push B=1", "sustained rate / raw `insert_many(1)` bound", "b1_sustained_share_insert", "{:.2f}"),
    ("push B=1", "sustained rate / raw append round trips bound", "b1_sustained_share_append", "{:.2f}"),
    ("push B=1", "database operations per request at the best rate (pushes, acks)", "b1_ops_per_req", "{:,.2f}"),
    ("fanout", "database operations per round (push, acks)", "fanout_ops_per_round", "{:,.0f}"),
]


def table(data, servers, rows=ROWS):
    lines = ["| scenario | figure | " + " | ".join(servers) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in servers) + " |"]
    for scen, label, key, fmt in rows:
        cells = []
        for s in servers:
            m = data.get(s, {})
            if isinstance(key, tuple):
                cells.append(" / ".join(cell(m.get(k, []), fmt) for k in key))
            else:
                cells.append(cell(m.get(key, []), fmt))
        if all(c in ("–", "– / –") for c in cells):
            continue
        lines.append(f"| {scen} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def med(m, key):
    v = m.get(key, [])
    return statistics.median(v) if v else None


def targets(data):
    h, n, x = data.get("herald", {}), data.get("socketio-node", {}), data.get("socketioxide", {})
    out = []

    def row(name, ok, figures):
        state = "–" if ok is None else ("**met**" if ok else "**not met**")
        out.append(f"| {name} | {figures} | {state} |")

    held = med(h, "idle_connected")
    row("idle: 19,000+ connections held", None if held is None else held >= 19000,
        f"Herald held {held:,.0f}" if held is not None else "not run")
    hr, nr = med(h, "idle_rss_kb"), med(n, "idle_rss_kb")
    row("idle: RSS per connection ≤ ½ of Node socket.io's",
        None if hr is None or nr is None else hr <= nr / 2,
        f"Herald {hr:.1f} KiB, Node {nr:.1f} KiB (half: {nr / 2:.1f})" if hr and nr else "not run")
    hd, xd = med(h, "b100_delivered"), med(x, "b100_delivered")
    row("push B=100: delivered+acked msgs/s at p99 < 100 ms ≥ socketioxide's",
        None if hd is None or xd is None else hd >= xd,
        f"Herald {hd:,.0f}/s, socketioxide {xd:,.0f}/s" if hd is not None and xd is not None else "not run")
    hb, xb = med(h, "b1_rate"), med(x, "b1_rate")
    row("push B=1: rate ≥ socketioxide's saturation rate",
        None if hb is None or xb is None else hb >= xb,
        f"Herald {hb:,.0f}/s, socketioxide {xb:,.0f}/s" if hb is not None and xb is not None else "not run")
    hp, xp, hl = med(h, "fanout_p99"), med(x, "fanout_p99"), med(h, "fanout_lost")
    row("fanout to 10,000: all received, p99 ≤ socketioxide's",
        None if hp is None or xp is None else (hp <= xp and hl == 0),
        f"Herald p99 {hp:,.1f} ms (lost {hl:,.0f}), socketioxide p99 {xp:,.1f} ms" if hp is not None and xp is not None else "not run")
    lost = sum(sum(h.get(k, [])) for k in ("idle_lost", "b100_lost", "b1_lost", "fanout_lost"))
    row("no loss in any scenario (Herald)", lost == 0 if h else None, f"Herald lost {lost:,}")
    # Issue 17: like for like, against the peer that also awaits every acknowledgement.
    a = data.get("socketioxide-ack", {})

    def versus(name, key, fmt, higher_is_better=True):
        hv, av = med(h, key), med(a, key)
        ok = None if hv is None or av is None else (hv >= av if higher_is_better else hv <= av)
        row(name, ok, f"Herald {fmt.format(hv)}, socketioxide-ack {fmt.format(av)} "
            f"(ratio {hv / av:.2f})" if ok is not None and av else "not run")

    versus("push B=100: delivered messages per server CPU-second (p99 < 100 ms) ≥ socketioxide-ack's",
           "b100_per_cpu", "{:,.0f}")
    versus("push B=1: requests per server CPU-second (p99 < 100 ms) ≥ socketioxide-ack's",
           "b1_per_cpu", "{:,.0f}")
    versus("fanout to 10,000: p99 ≤ socketioxide-ack's", "fanout_p99", "{:,.1f} ms",
           higher_is_better=False)
    hr = med(h, "idle_rss_kb")
    row("idle: ≤ 4 KiB per connection, 19,000 held",
        None if hr is None or held is None else (hr <= 4 and held >= 19000),
        f"Herald {hr:.1f} KiB, {held:,.0f} held" if hr is not None and held is not None else "not run")
    return "\n".join(["| target | figures (medians) | state |", "| --- | --- | --- |"] + out)


def db_targets(data):
    """Issue 12's measured targets for the MongoDB and cluster setups."""
    out = []
    for server in ("herald-mongo", "herald-cluster"):
        m = data.get(server)
        if not m:
            continue
        p99, n, lost = med(m, "fanout_p99"), med(m, "fanout_conns"), med(m, "fanout_lost")
        if p99 is not None:
            ok = p99 <= 1000 and lost == 0
            out.append(f"| {server}: fan-out to {n:,.0f} online clients, p99 ≤ 1 s | p99 "
                       f"{p99:,.1f} ms, lost {lost:,.0f} | {'**met**' if ok else '**not met**'} |")
        rate, bound = med(m, "b100_rate"), med(m, "bound100_insert")
        share = med(m, "b100_rate_share_insert")
        held, held_share = med(m, "b100_sustained"), med(m, "b100_sustained_share_insert")
        if rate is not None and bound and share is not None:
            also = ("" if held is None or held_share is None else
                    f"; sustained (p99 < 1 s) {Rate.format(held)} requests/s = {held_share:.2f} ×")
            out.append(f"| {server}: B=100 best rate ≥ ½ the raw `insert_many(100)` bound of the "
                       f"same run | best (p99 < 100 ms) {Rate.format(rate)} requests/s = "
                       f"{share:.2f} × the bound of {Rate.format(bound)}/s{also} | "
                       f"{'**met**' if share >= 0.5 else '**not met**'} |")
    if not out:
        return ""
    return "\n".join(["| target | figures (medians) | state |", "| --- | --- | --- |"] + out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    for k in ("started", "rev", "versions", "machine", "command", "settings", "load"):
        ap.add_argument("--" + k, default="")
    a = ap.parse_args()
    rows = load(a.results)
    data = per_rep(rows)
    reps_of = defaultdict(set)
    for r in rows:
        reps_of[r.get("server")].add(r.get("rep", 1))
    reps = ", ".join(f"{s} {len(v)}" for s, v in sorted(reps_of.items()))
    main_servers = [s for s in MAIN if s in data]
    extra = sorted(s for s in data if s not in MAIN)
    errors = [r for r in rows if "error" in r]
    here = os.path.dirname(os.path.abspath(__file__))
    analysis_path = os.path.join(here, "analysis.md")
    analysis = open(analysis_path).read().strip() if os.path.exists(analysis_path) else ""
    doc = f"""# Benchmarks

Herald against the Socket.IO servers its users would otherwise pick — Node
[socket.io](https://socket.io) and Rust [socketioxide](https://github.com/Totodore/socketioxide) —
on the same machine, in one session, by one command. This file is written by
`scripts/bench/run.sh` (tables) and `scripts/bench/analysis.md` (the analysis below them).

- **Run:** {a.started}; Herald at git `{a.rev}`; repetitions: {reps}.
- **Versions:** {a.versions}.
- **Machine:** {a.machine}. The server is pinned to core 0 and the load generator
  (`herald-bench`) to core 1 with `taskset`.
- **Command:** `{a.command}`
- **Settings:** {a.settings}.
- **Load average** (1, 5, 15 min) {a.load}: other work on the machine shows here.

Herald runs as its own peer: single port (`--api-listen` = `--connector-listen`), embedded
store, in-process broker, HMAC connect auth, **every message durable before `POST /push`
answers and acknowledged by the client** (`43<id>[]` per batch). The peers
(`bench/peers/`) keep nothing: each is a minimal server with the same surface (WebSocket
Socket.IO, `POST /push` emitting `message` `[msg]` to a room per client id). Node socket.io and
`socketioxide` ask for no ack; `socketioxide-ack` is the same socketioxide peer emitting every
message with an ack id (`emit_with_ack`) and awaiting each client's acknowledgement: the like for
like peer for Herald's delivery path, less the durable store. "Per server CPU-second" divides the
work done at the best rate by the server's CPU time there.
Each cell is the median over the repetitions, with min–max in brackets when they differ.
Every run starts a fresh server.

## Results

{table(data, main_servers)}

How the figures are taken: `idle` opens the connections (200 handshakes in flight, from
16 source addresses 127.0.0.2–17), holds them, and reads the server's `VmRSS` before and after
(`/proc/<pid>/status`); "per connection" is the difference over the connections held.
`push` is open loop: requests are due at fixed times (rate R), each carries its due time in
`data.t`, and latency is receive time minus due time, so a server that falls behind is charged
for its queue. It is run at increasing rates on a fresh server each; the table gives the highest
rate that kept p99 under 100 ms with nothing lost and at least 95% of the offered requests
answered. `fanout` pushes one message to every connected client (requests of 10,000
recipients), waits until all have it, five rounds; latency is per client and message.
Loss is counted per message after a drain (messages accepted by the server and not received).

## Targets

{targets(data)}
"""
    if extra:
        doc += f"""
## Herald on MongoDB and in a cluster

{table(data, extra, ROWS + LOW_ROWS + DB_ROWS)}

The `bound` rows are the database alone, measured by `herald-bench bound` in each repetition
on a fresh server of the same image on the same core, one command in flight at a time (as one
Herald node writes: one batch under way): documents shaped like Herald's stored copies, into
a collection with Herald's three indexes. "Best rate / bound" divides each repetition's best
B=100 (B=1) push rate — requests/s with p99 < 100 ms and nothing lost, every message durable
and acknowledged — by that repetition's bound; the cell is the median of those ratios.

{db_targets(data)}
"""
    if errors:
        doc += "\nRuns that failed to produce a report: " + "; ".join(
            f"{e['server']}: `{e['error']}`" for e in errors) + "\n"
    if analysis:
        doc += "\n" + analysis + "\n"
    with open(a.out, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
