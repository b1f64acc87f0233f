"""Python `requests` (a business server's HTTP client) against Herald, for the hostile-client
suite. Usage: python http_requests.py '{"url", "path", "method", "body"?, "n"}'
Sends `n` requests on one keep-alive Session, then `n` with `Connection: close`.
Prints one line: {"ok": <2xx answers>, "errors": [...], "closed": <answers saying close>}."""
import json
import sys

import requests

opts = json.loads(sys.argv[1])
ok, closed, errors = 0, 0, []
with requests.Session() as s:
    for close in (False, True):
        for _ in range(opts["n"]):
            headers = {"Connection": "close"} if close else {}
            try:
                r = s.request(opts.get("method", "GET"), opts["url"] + opts["path"],
                              json=opts.get("body"), headers=headers, timeout=20)
                if 200 <= r.status_code < 300:
                    ok += 1
                else:
                    errors.append(f"status {r.status_code}")
                if r.headers.get("connection", "").lower() == "close":
                    closed += 1
            except requests.RequestException as e:
                errors.append(str(e))
print(json.dumps({"ok": ok, "errors": errors, "closed": closed}))
