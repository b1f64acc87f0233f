"""A real python-socketio client driven over stdin/stdout by Herald's end-to-end tests.

Usage: python client.py '<options JSON>'
  options: {url, auth?, transports? (["websocket"] | ["polling", "websocket"]), headers?,
            ackPolicy?: "auto" | "manual"}
Events and commands are the same JSON lines as client.js. With ackPolicy "manual" the
message handler waits until an {"cmd":"ack"} arrives before returning (returning from the
handler is how python-socketio acknowledges).
"""
import json
import sys
import threading

import socketio

opts = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
ack_gate = threading.Semaphore(0)
manual = opts.get("ackPolicy", "auto") == "manual"


# python-socketio runs the handler of every incoming packet in a thread of its own, so two
# deliveries that arrived in order can reach `out` swapped. Each packet takes a ticket in the
# reader thread, in arrival order; its handler prints only when its ticket's turn comes, and
# gives the turn away once it printed (or ended without printing).
turn = threading.Condition()
tickets = {"next": 0, "serving": 0}
mine = threading.local()


def out(obj):
    ticket = getattr(mine, "ticket", None)
    with turn:
        if ticket is not None:
            turn.wait_for(lambda: tickets["serving"] == ticket)
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
        if ticket is not None:
            mine.ticket = None
            tickets["serving"] += 1
            turn.notify_all()


def give_turn_away():
    if getattr(mine, "ticket", None) is not None:
        out_ticket = mine.ticket
        with turn:
            turn.wait_for(lambda: tickets["serving"] == out_ticket)
            mine.ticket = None
            tickets["serving"] += 1
            turn.notify_all()


sio = socketio.Client(reconnection=False)
unordered_trigger = sio.eio._trigger_event


def ordered_trigger(event, *args, **kwargs):
    if event != "message" or not kwargs.get("run_async"):
        return unordered_trigger(event, *args, **kwargs)
    with turn:
        ticket = tickets["next"]
        tickets["next"] += 1
    handler = sio.eio.handlers["message"]

    def run():
        mine.ticket = ticket
        try:
            handler(*args)
        finally:
            give_turn_away()

    return sio.eio.start_background_task(run)


sio.eio._trigger_event = ordered_trigger


@sio.event
def connect():
    out({"ev": "connect", "transport": sio.transport()})


@sio.event
def connect_error(data):
    out({"ev": "connect_error", "data": data})


@sio.event
def disconnect(reason=None):
    out({"ev": "disconnect", "reason": str(reason)})


@sio.on("kicked")
def kicked(data):
    out({"ev": "kicked", "data": data})


@sio.on("message")
def message(batch):
    out({"ev": "message", "batch": batch, "hasAck": True})
    if manual:
        ack_gate.acquire()
    return None


def commands():
    for line in sys.stdin:
        try:
            c = json.loads(line)
        except ValueError:
            out({"ev": "error", "message": "bad command " + line.strip()})
            continue
        cmd = c.get("cmd")
        if cmd == "ack":
            ack_gate.release()
            out({"ev": "acked"})
        elif cmd == "commit":
            sio.emit("commit", c["n"])
        elif cmd == "disconnect":
            sio.disconnect()
        elif cmd == "exit":
            break
        else:
            out({"ev": "error", "message": "unknown command " + line.strip()})
    try:
        sio.disconnect()
    finally:
        out({"ev": "exit"})


try:
    sio.connect(
        opts["url"],
        auth=opts.get("auth"),
        headers=opts.get("headers") or {},
        transports=opts.get("transports") or ["polling", "websocket"],
        wait_timeout=10,
    )
except socketio.exceptions.ConnectionError as e:
    out({"ev": "connect_error", "message": str(e)})
commands()
