"""externalip and MetalLB (L2) side by side, in one run, on one lab (3 node
namespaces, a client, one kube-apiserver): MetalLB first, then it is stopped
and our agent + scheduler run on the same namespaces and API server.

Figures, for each implementation:
- reach 1:    a LoadBalancer Service created (selecting the pod every node
              runs; the lab writes its EndpointSlice as the controller would)
              until the client's first HTTP 200 from a pod through kube-proxy
              (the client starts polling when the IP appears in the Service's
              status); also until the IP appears;
- reach 100:  100 Services created at once: until all answer, and per Service;
- failover:   the serving node dies (link down, its agent/speaker and
              kube-proxy SIGKILLed, its API proxy stopped) until the client's
              first 200 through another node; the Service has
              externalTrafficPolicy Local, so each node forwards to its own
              pod (under Cluster a share of new connections would go to the
              dead node's pod until a node controller, absent here, removed
              its endpoint, whatever moved the IP);
- scale:      N Services (no endpoints) created at once until all have an IP,
              API requests per Service seen by the API server
              (apiserver_request_total, minus this script's own), and the
              allocator's RSS and CPU (MetalLB's controller; our schedulers).
Ours only: failover on agent SIGKILL and SIGSTOP (node up), node death with
every scheduler replica, and the serving node's API path failing while its
segment stays up (cut; 2 s of latency): moves, outage and split-brain window.

The client polls every 10 ms with a 200 ms timeout. The ratio printed is
ours / MetalLB (below 1: we are faster). Everything runs under a unique
prefix and is removed on exit, also on failure.

    .venv/bin/python bench/side_by_side.py [--runs 20] [--scale 1000] [--only metallb|ours]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import (
    Api,
    ArpWatch,
    ClientProbes,
    Probe,
    ServiceWatch,
    median,
    p99,
    rss_cpu,
    summary,
    timeline,
)
from _impls import APP, SCALE_POOL, Impl, MetalLBImpl, OursImpl, ours_available

from externalip_lab.faults import SLOW_API_SECONDS
from externalip_lab.lab import Lab, progress
from externalip_lab.topology import ip

NS = "bench"
Results = dict[str, dict[str, float]]
# Every measured value per program and figure, for the plots (bench/plots.py)
RAW: dict[str, dict[str, list[float]]] = {}
# Per program and fault, what the client saw in each failover run (timeline())
TIMELINES: dict[str, dict[str, list[dict[str, Any]]]] = {}


class Bench:
    def __init__(self, lab: Lab, impl: Impl, api: Api, results: Results) -> None:
        self.lab, self.impl, self.api = lab, impl, api
        self.out = results.setdefault(impl.name, {})
        self.watch = ServiceWatch(api, NS)
        self.probes = ClientProbes(lab.topology.client, 100)
        self.seq = 0
        self.profile_dir = ""

    def record(self, key: str, values: list[float], what: str) -> None:
        unit = "ms" if key.startswith(("fo", "split")) else "s"
        print(f"  [{self.impl.name}] {what}: {summary(values, unit)}", flush=True)
        RAW.setdefault(self.impl.name, {})[key] = list(values)
        if values:
            self.out[key] = median(values)
            self.out[key + " p99"] = p99(values)

    def _name(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.impl.program[:2]}-{self.seq}"

    def _delete(self, name: str) -> None:
        self.api.delete(f"/api/v1/namespaces/{NS}/services/{name}")

    def _released(self, addresses: list[str], timeout: float = 15) -> None:
        """Wait until no node holds these addresses any more (ours removes them
        asynchronously); a next Service may get the same IP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self.lab.holders(a) for a in addresses):
            time.sleep(0.1)

    # --- time to reachable ---------------------------------------------------
    def reach(self, count: int, runs: int) -> None:
        total, each, to_ip = [], [], []
        for _ in range(runs):
            times, ips = self._reach_round(count)
            ok = [t for t in times if not math.isnan(t)]
            if len(ok) == count:
                total.append(max(ok))
            each += ok
            to_ip += ips
        if count == 1:
            self.record("reach1", each, f"reach, 1 Service ({runs} runs)")
            self.record("ip1", to_ip, "  of which until the IP is in status")
        else:
            self.record(f"reach{count}", total, f"reach, all of {count} Services ({runs} runs)")
            self.record(f"reach{count} each", each, f"  per Service of the {count}")

    def _reach_round(self, count: int) -> tuple[list[float], list[float]]:
        """Create `count` Services at once; per Service the seconds until the
        client's first 200, and until the IP was in status."""
        names = [self._name(f"r{count}") for _ in range(count)]
        ip("-n", self.lab.topology.client, "neigh", "flush", "all")
        done: dict[str, float] = {}
        all_done = threading.Event()
        lock = threading.Lock()

        def reached(name: str, t: float, node: str | None) -> None:
            with lock:
                done[name] = t if node is not None else math.nan
                if len(done) == count:
                    all_done.set()

        def on_ip(name: str, address: str, t: float) -> None:
            if name in names:
                self.probes.reach(address, t + 60, functools.partial(reached, name))

        self.watch.on_ip = on_ip
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._create_service, names))
        all_done.wait(90)
        self.watch.on_ip = None
        times = [done.get(n, math.nan) - t0 for n in names]
        to_ip = [self.watch.got_ip[n][0] - t0 for n in names if n in self.watch.got_ip]
        addresses = [self.watch.got_ip[n][1] for n in names if n in self.watch.got_ip]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._delete, names))
        self._released(addresses)
        time.sleep(0.5)
        return times, to_ip

    def _create_service(self, name: str, pool: str = "", local: bool = False) -> None:
        self.api.create(f"/api/v1/namespaces/{NS}/services",
                        self.impl.service(name, NS, pool, local))

    def _create_scale_service(self, name: str) -> None:
        self._create_service(name, SCALE_POOL)

    def _delete_service(self, name: str) -> None:
        self._delete(name)

    # --- failover ------------------------------------------------------------------
    def failover(self, runs: int, fault: str) -> None:
        name = self._name("fo")
        ip("-n", self.lab.topology.client, "neigh", "flush", "all")
        self._create_service(name, local=True)
        if not self.watch.wait([name], 30):
            print(f"  [{self.impl.name}] failover: no IP", flush=True)
            return
        address = self.watch.got_ip[name][1]
        probe = Probe(self.lab.topology.client, address)
        arp = ArpWatch(self.lab.topology.client, address)
        times: list[float] = []
        windows: list[float] = []
        try:
            for _ in range(runs):
                if probe.first(lambda n: n is not None, 0, 60) is None:
                    print(f"    {address} not reachable; held by {self.lab.holders(address)}",
                          flush=True)
                    break
                time.sleep(1.0)
                victim, t0 = probe.current(), time.monotonic()
                old_mac = arp.mac_at(t0)
                if victim is None:
                    continue
                self._inject(fault, victim)
                hit = probe.first(functools.partial(_elsewhere, victim), t0, 60)
                if hit is not None:
                    times.append(hit[0] - t0)
                    time.sleep(2.0)  # watch both MACs for a while after the move
                    TIMELINES.setdefault(self.impl.name, {}).setdefault(fault, []).append(
                        timeline(probe, t0, victim, hit[0] - t0 + 1.0))
                    if old_mac is not None:
                        windows.append(arp.overlap(old_mac, t0))
                self.impl.restore_node(victim)
                self._settle(probe)
        finally:
            arp.close()
            probe.close()
            self._delete(name)
            self._released([address])
        self.record(f"fo-{fault}", times, f"failover, {FAULTS[fault]} ({len(times)}/{runs} runs)")
        self.record(f"split-{fault}", windows,
                    "  two MACs answering ARP for the IP after it (split-brain window)")

    def _inject(self, fault: str, victim: str) -> None:
        if fault == "node":
            self.impl.kill_node(victim)
        elif fault == "frozen":
            self.lab.freeze_agent(victim)
        elif fault == "leader":  # the node dies with the scheduler leader on it
            self.impl.kill_node(victim)
            # every scheduler replica dies with the node: no leader exists while
            # the address moves (they come back as new candidates at once)
            for index in range(1, self.lab.schedulers + 1):
                self.lab.kill_scheduler(index)
                self.lab.start_scheduler(index)
        else:
            self.impl.kill_program(victim, 9 if fault == "sigkill" else 15)

    def _settle(self, probe: Probe) -> None:
        """Let the restored node rejoin (memberlist / Lease) before the next run."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and probe.current() is None:
            time.sleep(0.1)
        time.sleep(4.0)

    # --- a node whose API path fails, data plane intact (ours) ---------------------
    def api_fault(self, runs: int, kind: str = "cut", seconds: float = 15.0) -> None:
        """The serving node's API path fails but not its segment: its proxy
        stops (`cut`), or delays every answer by 2 s (`slow`). The figures are
        how many runs moved the address, how long the client got no answer,
        and how long two MACs answered. All should be zero."""
        name = self._name(kind)
        ip("-n", self.lab.topology.client, "neigh", "flush", "all")
        self._create_service(name, local=True)
        moves, outages, windows = [], [], []
        if self.watch.wait([name], 30):
            address = self.watch.got_ip[name][1]
            probe = Probe(self.lab.topology.client, address)
            arp = ArpWatch(self.lab.topology.client, address)
            try:
                for _ in range(runs):
                    if probe.first(lambda n: n is not None, 0, 60) is None:
                        break
                    time.sleep(1.0)
                    victim, t0 = probe.current(), time.monotonic()
                    old_mac = arp.mac_at(t0)
                    if victim is None or old_mac is None:
                        continue
                    if kind == "cut":
                        self.lab.partition(victim)
                    else:
                        self.lab.proxies[victim].latency = SLOW_API_SECONDS
                    time.sleep(seconds)
                    moves.append(float(probe.first(functools.partial(_elsewhere, victim), t0,
                                                   0.01) is not None))
                    outages.append(probe.silence(t0))
                    windows.append(arp.overlap(old_mac, t0))
                    self.lab.heal(victim)
                    self._settle(probe)
            finally:
                arp.close()
                probe.close()
        self._delete(name)
        what = f"API {'cut' if kind == 'cut' else 'slow (2 s)'} for {seconds:.0f} s"
        self.record(f"{kind}-moves", moves, f"{what}: runs that moved the IP")
        self.record(f"{kind}-outage", outages, "  longest time the client got no answer")
        self.record(f"split-{kind}", windows, "  two MACs answering ARP for the IP")

    # --- scale ----------------------------------------------------------------------
    def scale(self, count: int) -> None:
        names = [self._name(f"s{count}") for _ in range(count)]
        pids = self.impl.allocator_pids()
        before_usage = [rss_cpu(p) for p in pids]
        moves_before = self._moves()
        metrics_before, own_before = self.api.metrics(), Counter(self.api.own)
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._create_scale_service, names))
        created = time.monotonic() - t0
        ok = self.watch.wait(names, 900)
        have = [self.watch.got_ip[n][0] - t0 for n in names if n in self.watch.got_ip]
        t_all = max(have) if ok and have else math.nan
        time.sleep(5)  # let trailing status writes land before counting
        others = self.api.others_requests(metrics_before, own_before)
        after_usage = [rss_cpu(p) for p in pids]
        moves = self._moves() - moves_before
        rss = sum(a[0] for a in after_usage)
        cpu = sum(a[1] - b[1] for a, b in zip(after_usage, before_usage, strict=True))
        per_service = sum(others.values()) / count
        each_rss = ", ".join(f"{a[0]:.0f}" for a in after_usage)
        each_cpu = ", ".join(f"{a[1] - b[1]:.1f}"
                             for a, b in zip(after_usage, before_usage, strict=True))
        print(f"  [{self.impl.name}] scale {count}: created in {created:.1f}s, all have an IP "
              f"after {t_all:.1f}s ({len(have)}/{count}); API requests by the programs: "
              f"{sum(others.values())} ({per_service:.2f}/Service); allocator RSS {rss:.0f} MiB "
              f"({each_rss}), CPU {cpu:.1f}s ({each_cpu}); "
              f"after the last create: {t_all - created:.1f}s; claim moves: {moves}", flush=True)
        print("    requests by verb/resource: " + ", ".join(
            f"{v} {r}: {n}" for (v, r), n in others.most_common(10)), flush=True)
        self.out[f"scale{count}"] = t_all
        RAW.setdefault(self.impl.name, {})[f"scale{count} each"] = have
        self.out[f"scale{count} req/svc"] = per_service
        self.out[f"scale{count} rss MiB"] = rss
        self.out[f"scale{count} cpu s"] = cpu
        self.out[f"scale{count} after last create"] = t_all - created
        self.out[f"scale{count} moves"] = moves
        self.out[f"scale{count} max rss MiB"] = max(a[0] for a in after_usage)
        t1 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._delete_service, names))
        print(f"    deleted {count} Services in {time.monotonic() - t1:.1f}s", flush=True)
        time.sleep(5)

    def _moves(self) -> int:
        """Claim moves so far: the scheduler says each in an Event on the
        Service (ClaimMoved: re-placed; ClaimTakenOver: a standby took it),
        folded with a count. MetalLB has none of these."""
        total = 0
        for reason in ("ClaimMoved", "ClaimTakenOver"):
            items = self.api.request("GET", f"/api/v1/namespaces/{NS}/events?fieldSelector="
                                     f"reason%3D{reason}")["items"]
            total += sum(int(e.get("count") or 1) for e in items)
        return total

    def profiled(self, what: str, pids: list[int]) -> Profiler:
        return Profiler(self.profile_dir, f"{what}-{self.impl.program}", pids)

    def close(self) -> None:
        self.watch.close()
        self.probes.close()


class Profiler:
    """py-spy (if given a directory and found on PATH) sampling these PIDs while
    a figure is measured; raw collapsed stacks land in DIR/<what>-<pid>.txt."""

    def __init__(self, directory: str, what: str, pids: list[int]) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        spy = shutil.which("py-spy")
        if not directory or spy is None:
            return
        for pid in pids:
            self.procs.append(subprocess.Popen(
                [spy, "record", "--format", "raw", "--rate", "200", "--nonblocking",
                 "-o", f"{directory}/{what}-{pid}.txt", "-p", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def __enter__(self) -> Profiler:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


FAULTS = {"node": "node death (link down + program SIGKILL + API cut)",
          "sigkill": "program SIGKILL, node up", "sigterm": "program SIGTERM, node up",
          "frozen": "program frozen (SIGSTOP), node up",
          "leader": "node death with every scheduler replica killed at once"}


def _elsewhere(victim: str, node: str | None) -> bool:
    return node is not None and node != victim


ROWS = [
    ("reach1", "time to reachable, 1 Service (median)"),
    ("reach1 p99", "time to reachable, 1 Service (p99)"),
    ("ip1", "time until the IP is in status, 1 Service (median)"),
    ("reach100", "time to reachable, 100 Services at once, all (median)"),
    ("reach100 each", "time to reachable, per Service of 100 (median)"),
    ("fo-node", "failover, node death (median)"),
    ("fo-node p99", "failover, node death (p99)"),
]


def print_table(results: Results, scales: list[int]) -> None:
    rows = list(ROWS)
    for scale in scales:
        rows += [(f"scale{scale}", f"{scale} Services: all have an IP"),
                 (f"scale{scale} after last create", f"{scale} Services: ... after the last "
                  "create returned"),
                 (f"scale{scale} req/svc", f"{scale} Services: API requests per Service"),
                 (f"scale{scale} rss MiB", f"{scale} Services: allocator RSS (MiB)"),
                 (f"scale{scale} max rss MiB", f"{scale} Services: largest allocator "
                  "process RSS (MiB)"),
                 (f"scale{scale} cpu s", f"{scale} Services: allocator CPU (s)"),
                 (f"scale{scale} moves", f"{scale} Services: claim moves")]
    ours, theirs = results.get("externalip", {}), results.get("MetalLB v0.15.2", {})
    print("\n| figure | externalip | MetalLB v0.15.2 | ours / MetalLB |")
    print("|---|---|---|---|")
    for key, label in rows:
        a, b = ours.get(key, math.nan), theirs.get(key, math.nan)
        ratio = a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan
        print(f"| {label} | {_fmt(key, a)} | {_fmt(key, b)} | {ratio:.2f} |")
    extra = [k for k in ours if k not in dict(rows)]
    for key in extra:
        print(f"| {key} (ours only) | {_fmt(key, ours[key])} | | |")


def _fmt(key: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if key.startswith(("fo", "split")):
        return f"{value * 1000:.0f} ms"
    if "req" in key or "MiB" in key or "cpu" in key or "moves" in key:
        return f"{value:.1f}"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def run(impl: Impl, lab: Lab, api: Api, results: Results, args: argparse.Namespace) -> None:
    progress(f"== {impl.name}")
    impl.start()
    bench = Bench(lab, impl, api, results)
    bench.profile_dir = args.profile if isinstance(impl, OursImpl) else ""  # py-spy: Python only
    try:
        time.sleep(3)
        if args.scale_only:
            args.parts = "scale"
        if args.failover_only:
            # SIGTERM is a restart: the addresses stay for --restart-grace by design
            ours = [f for f in FAULTS if f != "sigterm"]
            for fault in (["node"] if not isinstance(impl, OursImpl) else ours):
                bench.failover(args.runs, fault)
            if isinstance(impl, OursImpl):
                bench.api_fault(args.split_runs, "cut")
                bench.api_fault(args.split_runs, "slow", 30.0)
            return
        parts = set(args.parts.split(","))
        if "reach1" in parts:
            bench.reach(1, args.runs)
        programs = [p.popen.pid for n, p in lab.procs.items() if n.startswith(impl.program)]
        if "reach100" in parts:
            with bench.profiled("reach100", programs + impl.allocator_pids()):
                bench.reach(100, args.runs100)
        if "failover" in parts:
            bench.failover(args.runs, "node")
        if "failover" in parts and isinstance(impl, OursImpl):
            for fault in ("sigkill", "frozen", "leader"):
                bench.failover(args.runs, fault)
            bench.api_fault(args.split_runs, "cut")
            bench.api_fault(args.split_runs, "slow", 30.0)
        for count in args.scale if "scale" in parts else ():
            with bench.profiled(f"scale{count}", programs + impl.allocator_pids()):
                bench.scale(count)
        if args.scale_big and isinstance(impl, OursImpl):
            bench.scale(args.scale_big)
    finally:
        bench.close()
        impl.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runs100", type=int, default=3)
    parser.add_argument("--split-runs", type=int, default=3)
    parser.add_argument("--scale", type=int, nargs="+", default=[1000],
                        help="Services created at once, one figure per count (e.g. 1000 10000)")
    parser.add_argument("--parts", default="reach1,reach100,failover,scale",
                        help="which figures, comma-separated (e.g. reach1,scale)")
    parser.add_argument("--scale-big", type=int, default=0, help="e.g. 10000 (ours only)")
    parser.add_argument("--only", choices=["metallb", "ours"])
    parser.add_argument("--scale-only", action="store_true",
                        help="only the scale figure (e.g. --scale 10000 --only ours)")
    parser.add_argument("--failover-only", action="store_true",
                        help="only the failover figures (every fault ours has, node death for "
                        "MetalLB)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--profile", default="",
                        help="directory for py-spy profiles of the programs (if py-spy is found)")
    args = parser.parse_args()
    results: Results = {}
    with Lab(nodes=3, mode="none", apps=((NS, APP),)) as lab:
        assert lab.cp is not None
        api = Api(lab.cp)
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": NS}})
        impls: list[Impl] = []
        if args.only != "ours":
            impls.append(MetalLBImpl(lab))
        if args.only != "metallb":
            if ours_available():
                impls.append(OursImpl(lab))
            else:
                print("externalip agent/scheduler not in this checkout: ours not measured")
        for impl in impls:
            run(impl, lab, api, results, args)
    print_table(results, args.scale)
    if args.json:  # what bench/plots.py draws, with the command and commit that made it
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
        with open(args.json, "w") as f:
            json.dump({"command": "bench/side_by_side.py " + " ".join(sys.argv[1:]),
                       "commit": commit, "figures": results, "raw": RAW,
                       "timelines": TIMELINES}, f, indent=1)
    return 0


if __name__ == "__main__":
    # SIGTERM (make, timeout) unwinds like Ctrl-C, so the lab is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
