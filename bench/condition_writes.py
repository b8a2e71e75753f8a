"""What the conditions cost, and what the new latency histograms read, in the lab.

    sudo .venv/bin/python bench/condition_writes.py [SERVICES]

Creates SERVICES LoadBalancer Services at once (default 50) in a 3-node lab,
from a pool of their own (198.19.128.0/17, as bench/side_by_side.py's scale
pool: the lab's own pool holds 51 addresses), waits until every Service's
`externalip.io/AddressAssigned` condition is True and every claim's `Ready`
condition is True, then prints:
- the API requests per Service of all our programs, by verb and resource
  (apiserver_request_total, minus this script's own): the conditions must
  add none (one Service status patch per Service, one claim status patch);
- the allocation and announcement histograms the programs exposed
  (externalip_allocation_seconds from the leader, externalip_announcement_seconds
  summed over the agents), as count and mean.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter

from _common import Api
from _impls import SCALE_CIDR, SCALE_RANGE

from externalip_lab.lab import Lab

NS = "conds"
READ = {"GET", "LIST", "WATCH"}


def lb(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS,
                         "annotations": {"externalip.io/pool": NS}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}],
                     "allocateLoadBalancerNodePorts": False}}


def done(api: Api, n: int) -> bool:
    services = api.request("GET", f"/api/v1/namespaces/{NS}/services")["items"]
    assigned = sum(any(c["type"] == "externalip.io/AddressAssigned" and c["status"] == "True"
                       for c in (s.get("status") or {}).get("conditions") or ())
                   for s in services)
    claims = api.request("GET", "/apis/ipcontroller.ext/v1/ipclaims")["items"]
    ready = sum(any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (c.get("status") or {}).get("conditions") or ()) for c in claims)
    return assigned == n and ready >= n


def settled(api: Api, n: int) -> bool:
    """The statuses that may be held back (--status-interval) say it all: the
    pool counts every address, the agents' IpNodes list every one."""
    pool = api.request("GET", f"/apis/ipcontroller.ext/v1/ipclaimpools/{NS}")
    nodes = api.request("GET", "/apis/ipcontroller.ext/v1/ipnodes")["items"]
    held = sum(len((o.get("status") or {}).get("addresses") or ()) for o in nodes)
    return bool((pool.get("status") or {}).get("used") == n and held == n)


def histogram(text: str, name: str) -> tuple[float, float]:
    """(count, sum) of an unlabelled histogram on a /metrics page."""
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith((f"{name}_count", f"{name}_sum"))}
    return values.get(f"{name}_count", 0.0), values.get(f"{name}_sum", 0.0)


def scrape(netns: str | None, port: int) -> str:
    code = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")
    argv = [sys.executable, "-c", code, f"http://127.0.0.1:{port}/metrics"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def main(n: int) -> None:
    with Lab(nodes=3, apps=()) as lab:
        assert lab.cp is not None
        api = Api(lab.cp)
        lab.cp.ensure_namespace(NS)
        api.create("/apis/ipcontroller.ext/v1/ipclaimpools", {
            "apiVersion": "ipcontroller.ext/v1", "kind": "IpClaimPool", "metadata": {"name": NS},
            "spec": {"cidr": SCALE_CIDR, "ranges": [list(SCALE_RANGE)], "autoAssign": False}})
        time.sleep(5)  # past the start-up writes (IpNodes, Healthy conditions, pool status)
        before, own = api.metrics(), Counter(api.own)
        started = time.monotonic()
        for i in range(n):
            api.create(f"/api/v1/namespaces/{NS}/services", lb(f"s{i}"))
        while not done(api, n):
            if time.monotonic() - started > 300:
                raise TimeoutError("not every Service got a True condition in 300 s")
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        while not settled(api, n):  # the writes held back are part of the cost
            if time.monotonic() - started > 600:
                raise TimeoutError("pool and IpNode statuses not complete in 600 s")
            time.sleep(0.5)
        settle = time.monotonic() - started
        time.sleep(3)  # trailing writes (Events) land
        delta = api.others_requests(before, own)
        print(f"{n} LoadBalancer Services: all assigned and held in {elapsed:.1f} s, "
              f"pool and IpNode statuses complete in {settle:.1f} s")
        writes = {k: v for k, v in delta.items() if k[0] not in READ}
        for (verb, resource), count in sorted(writes.items()):
            print(f"  {verb} {resource}: {count / n:.2f} per Service")
        print(f"  all writes: {sum(writes.values()) / n:.2f} per Service; all requests "
              f"(reads too): {sum(delta.values()) / n:.2f}; all requests but Lease "
              f"requests (elections, renewals: a fixed cost per second): "
              f"{sum(v for k, v in delta.items() if k[1] != 'leases') / n:.2f}")
        for name, proc in lab.procs.items():
            if not name.startswith("scheduler-"):
                continue
            args = " ".join(map(str, proc.popen.args))  # type: ignore[arg-type]
            port = int(args.split("--metrics-addr=127.0.0.1:")[1].split()[0])
            page = scrape(None, port)
            count, total = histogram(page, "externalip_allocation_seconds")
            for line in page.splitlines():
                if line.startswith("externalip_scheduler_writes_total{") and "ok" in line:
                    print(f"  {name}: {line}")
            if count:
                print(f"  {name}: externalip_allocation_seconds count {count:.0f}, "
                      f"mean {1000 * total / count:.1f} ms")
        count = total = 0.0
        for node in lab.node_names:
            c, t = histogram(scrape(lab.topology.node_ns(node), 9440),
                             "externalip_announcement_seconds")
            count, total = count + c, total + t
        print(f"  agents: externalip_announcement_seconds count {count:.0f}, "
              f"mean {1000 * total / max(count, 1):.2f} ms")
        print(json.dumps({f"{v} {r}": c for (v, r), c in sorted(delta.items())}))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the lab is removed
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
