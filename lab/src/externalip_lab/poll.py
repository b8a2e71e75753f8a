"""A client that polls a VIP for a while and says what it lost: run inside the
client namespace. One new connection per request (GET http://IP/), one
request every INTERVAL seconds; at the end one JSON line:

    {"requests": n, "answered": n, "failed": {"timeout": n, "reset": n, ...},
     "longest_gap": s, "gaps": [[t, s], ...], "via": [[t, node], ...],
     "failures": [[t, kind], ...]}

`longest_gap` is the longest time between two answered requests (the
client's outage; one interval when nothing is lost), `gaps` every gap
longer than three intervals with the time it ended, `via` the node that
took the requests in each time it changed (t on CLOCK_MONOTONIC, one clock
for every namespace, so a caller can place its own actions on it). A
request that times out met nobody; one that is reset was in flight while
the client switched to another node's MAC.

    python -m externalip_lab.poll IP SECONDS [INTERVAL_S] [TIMEOUT_S]
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from externalip_lab.pods import Answer


def ask(ip: str, timeout: float) -> tuple[Answer | None, str]:
    """The answer, or None and why not (timeout, reset, refused, ...)."""
    host = ip.strip("[]")
    conn = http.client.HTTPConnection(host, 80, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": f"[{host}]" if ":" in host else host,
                                          "Connection": "close"})
        resp = conn.getresponse()
        answer = Answer.parse(resp.read().decode()) if resp.status == 200 else None
        return answer, "" if answer else f"http-{resp.status}"
    except TimeoutError:
        return None, "timeout"
    except ConnectionResetError:
        return None, "reset"
    except OSError as exc:
        return None, type(exc).__name__
    finally:
        conn.close()


def poll(ip: str, seconds: float, interval: float = 0.02,
         timeout: float = 1.0) -> dict[str, object]:
    end = time.monotonic() + seconds
    failed: Counter[str] = Counter()
    via: list[tuple[float, str]] = []
    failures: list[tuple[float, str]] = []
    requests = answered = 0
    last_ok: float | None = None
    gap = 0.0
    gaps: list[tuple[float, float]] = []
    while time.monotonic() < end:
        started = time.monotonic()
        answer, why = ask(ip, timeout)
        now = time.monotonic()
        requests += 1
        if answer is None:
            failed[why] += 1
            failures.append((round(started, 3), why))
        else:
            answered += 1
            if last_ok is not None:
                gap = max(gap, now - last_ok)
                if now - last_ok > 3 * interval:
                    gaps.append((round(now, 3), round(now - last_ok, 4)))
            last_ok = now
            if not via or via[-1][1] != answer.via:
                via.append((round(now, 3), answer.via))
        time.sleep(max(0.0, started + interval - time.monotonic()))
    return {"requests": requests, "answered": answered, "failed": dict(failed),
            "longest_gap": round(gap, 4), "gaps": gaps, "via": via, "failures": failures}


def start(netns: str, ip: str, seconds: float, interval: float = 0.02,
          timeout: float = 1.0) -> subprocess.Popen[str]:
    """This poller running in `netns` (the lab's client); `result` collects it."""
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m",
                             "externalip_lab.poll", ip, str(seconds), str(interval),
                             str(timeout)], stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen[str], wait: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=wait)
    if proc.returncode != 0:
        raise RuntimeError(f"poller failed ({proc.returncode})")
    found: dict[str, Any] = json.loads(out)
    return found


def main(argv: list[str]) -> int:
    ip, seconds = argv[0], float(argv[1])
    interval = float(argv[2]) if len(argv) > 2 else 0.02
    timeout = float(argv[3]) if len(argv) > 3 else 1.0
    print(json.dumps(poll(ip, seconds, interval, timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
