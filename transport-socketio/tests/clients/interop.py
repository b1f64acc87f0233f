"""Interop checks with the official python-socketio client against the echo example.

Usage: python interop.py <url> <websocket|polling> <namespace>
Prints one JSON object with what happened; exits 0 when every check passed.
"""
import json
import sys
import threading

import socketio

url, mode, nsp = sys.argv[1:4]
transports = ["websocket"] if mode == "websocket" else ["polling", "websocket"]
checks = {}
result = {"checks": checks}
auth = {"token": "abc", "n": 1}
got_auth = threading.Event()
got_back = threading.Event()


def finish(code):
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.exit(code)


sio = socketio.Client(reconnection=False)


@sio.on("auth", namespace=nsp)
def on_auth(a):
    checks["auth echoed"] = a == auth
    got_auth.set()


@sio.on("message-back", namespace=nsp)
def on_back(*args):
    checks["message echoed"] = list(args[:3]) == [1, "two", {"three": 3}]
    checks["binary echoed"] = args[3] == b"\x01\x02\x03"
    got_back.set()


try:
    sio.connect(url, auth=auth, transports=transports, namespaces=[nsp], wait_timeout=10)
except socketio.exceptions.ConnectionError as e:
    result["error"] = "connect failed: %s" % e
    finish(1)
checks["auth received"] = got_auth.wait(10)
sio.emit("message", (1, "two", {"three": 3}, b"\x01\x02\x03"), namespace=nsp)
checks["message-back received"] = got_back.wait(10)
answer = sio.call("message-with-ack", ("x", b"\x09"), namespace=nsp, timeout=10)
checks["ack answered"] = answer == ("x", b"\x09") or answer == ["x", b"\x09"]
result["transport"] = sio.transport()
sio.disconnect()

refused = socketio.Client(reconnection=False)
refusals = []
refused.on("connect_error", lambda data: refusals.append(data))
try:
    refused.connect(url, auth={"refuse": True}, transports=transports, wait_timeout=10)
    checks["refused"] = False
except socketio.exceptions.ConnectionError:
    checks["refused"] = refusals == [{"message": "refused"}]
    result["refusals"] = refusals

unknown = socketio.Client(reconnection=False)
unknowns = []
unknown.on("connect_error", lambda data: unknowns.append(data), namespace="/nope")
try:
    unknown.connect(url, transports=transports, namespaces=["/nope"], wait_timeout=10)
    checks["unknown namespace"] = False
except socketio.exceptions.ConnectionError:
    checks["unknown namespace"] = unknowns == [{"message": "Invalid namespace"}]
    result["unknowns"] = unknowns

finish(0 if all(checks.values()) else 1)
