"""One HTTP connection kept open across a fault, run in the client namespace:
GET / once, print the answer, wait for a line on stdin, GET / again on the
same connection and print what happened, one JSON line each:
{"answer": "pod=.. node=.. client=.."} or {"error": "<exception name>"}.

    python -m externalip_lab.keepalive IP [TIMEOUT_S]
"""

from __future__ import annotations

import http.client
import json
import sys


def get(conn: http.client.HTTPConnection) -> dict[str, str]:
    try:
        conn.request("GET", "/")
        return {"answer": conn.getresponse().read().decode().strip()}
    except (OSError, http.client.HTTPException) as exc:
        return {"error": type(exc).__name__}


def main(argv: list[str]) -> int:
    timeout = float(argv[1]) if len(argv) > 1 else 5.0
    conn = http.client.HTTPConnection(argv[0], 80, timeout=timeout)
    print(json.dumps(get(conn)), flush=True)
    sys.stdin.readline()
    print(json.dumps(get(conn)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
