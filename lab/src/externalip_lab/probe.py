"""A client-side prober for the lab: runs inside the client namespace and
GETs http://IP/ every few milliseconds, printing one JSON line whenever the
node that took the request in changes: {"t": <CLOCK_MONOTONIC seconds>,
"ip": ..., "node": name or null, "pod": the answering pod or null}. The
answer comes from a pod through kube-proxy; which node forwarded it is read
from the client address the pod saw (see `externalip_lab.pods.Answer`).

CLOCK_MONOTONIC is one clock for the whole machine, across network
namespaces, so the lab can subtract the time it killed a node from the time
the client first got an answer from another node.

    python -m externalip_lab.probe IP [INTERVAL_S] [TIMEOUT_S]
"""

from __future__ import annotations

import http.client
import json
import sys
import time

from externalip_lab.pods import Answer


def ask(ip: str, timeout: float) -> Answer | None:
    host = f"[{ip}]" if ":" in ip else ip
    conn = http.client.HTTPConnection(host.strip("[]"), 80, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        return Answer.parse(resp.read().decode()) if resp.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    ip = argv[0]
    interval = float(argv[1]) if len(argv) > 1 else 0.02
    timeout = float(argv[2]) if len(argv) > 2 else 0.2
    last: object = ...
    while True:
        answer = ask(ip, timeout)
        node = answer.via if answer else None
        if node != last:
            print(json.dumps({"t": time.monotonic(), "ip": ip, "node": node,
                              "pod": answer.pod if answer else None}), flush=True)
            last = node
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
