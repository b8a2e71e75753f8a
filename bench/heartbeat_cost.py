"""What the heartbeats (src/externalip/net/heartbeat.py) cost per node.

For 3, 10 and 30 node namespaces on one bridge (the lab's topology), one
process per node runs `Heartbeats` at the default timings (beat every
100 ms, detection window 500 ms). Once all are up and hear each other, each
measures for a window of its own (default 10 s): its CPU time (user +
system, all threads), beats sent and received, how late its wake-ups were,
and how many times a peer went stale although nothing failed (false
suspicions). The rest is computed from the protocol: a node receives
(N - 1) x 10 beats per second of 50 + len(name) + 5 x (N - 1) bytes, and a
least-squares fit of CPU against beats received (fixed + per beat) over the
sizes whose nodes kept their beat rate gives the cost at 100 and 1,000
nodes; a size that could not (an overloaded machine) is flagged. The
kernel share is shown apart: in the lab a broadcast crosses a software
bridge and N - 1 veths, work a real switch does, partly charged to the
sender's system call. Everything
carries a unique prefix and is removed.

    .venv/bin/python bench/heartbeat_cost.py [seconds] [sizes...]
    PEER_PRIORITY=10 .venv/bin/python bench/heartbeat_cost.py ...   (real-time threads)
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import time

from externalip.core.heartbeat import (
    MAX_DATAGRAM,
    TAG_BYTES,
    Beat,
    ReplayGuard,
    decode,
    encode,
)

PORT = 7947
KEY = b"bench-heartbeat-key-0123456789ab"
INTERVAL = 0.1


def child(node: str, seconds: float) -> None:
    """Run in a node namespace: beat, wait for "go", measure a window, print JSON."""
    from prometheus_client import REGISTRY  # noqa: PLC0415 (the parent does not need it)

    from externalip import log  # noqa: PLC0415
    from externalip.core.heartbeat import KeyRing, PeerView  # noqa: PLC0415
    from externalip.net.heartbeat import Heartbeats  # noqa: PLC0415

    log.setup("json", "warning")  # stdout carries the result

    stale_flips = [0, 0]  # all, and those seen while our own loop was not starved
    last: list[frozenset[str]] = [frozenset()]

    def on_change(view: PeerView) -> None:
        lost = len(last[0] - view.hears)
        stale_flips[0] += lost
        stale_flips[1] += 0 if view.starved else lost
        last[0] = view.hears

    hb = Heartbeats(node, "eth0", PORT, KeyRing(1, {1: KEY}), interval=INTERVAL,
                    on_change=on_change, priority=int(os.environ.get("PEER_PRIORITY", "0")))
    hb.start()
    print("ready", flush=True)
    sys.stdin.readline()
    time.sleep(2)  # everybody hears everybody before the window opens

    def sample() -> tuple[float, float, float, float, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        value = REGISTRY.get_sample_value
        return (ru.ru_utime + ru.ru_stime, value("externalip_heartbeat_sent_total") or 0,
                value("externalip_heartbeat_received_total") or 0, time.monotonic(),
                ru.ru_stime)

    stale_flips[:] = [0, 0]
    lags: list[float] = []
    before = sample()
    end = before[3] + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        lags.append(hb.view().lag)
    after = sample()
    view = hb.view()
    hb.stop()
    span = after[3] - before[3]
    print(json.dumps({
        "node": node, "cpu": (after[0] - before[0]) / span,
        "cpu_sys": (after[4] - before[4]) / span,
        "sent": (after[1] - before[1]) / span, "received": (after[2] - before[2]) / span,
        "fresh": len(view.hears), "stale_flips": stale_flips[0],
        "unstarved_flips": stale_flips[1],
        "lag_max": max(lags), "lag_p50": sorted(lags)[len(lags) // 2],
    }), flush=True)


def run_size(n: int, seconds: float) -> list[dict[str, float]]:
    from externalip_lab.topology import Topology  # noqa: PLC0415

    topo = Topology("eipb" + secrets.token_hex(3), n)
    procs: list[subprocess.Popen[str]] = []
    try:
        topo.create()
        for node in topo.node_names():
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", topo.node_ns(node), sys.executable, __file__,
                 "--child", node, str(seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        return [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        topo.destroy()


def datagram_bytes(peers: int, name_len: int = 5) -> int:
    return 50 + name_len + TAG_BYTES * peers


def report(n: int, results: list[dict[str, float]]) -> tuple[float, float, bool]:
    """Print one size; (median CPU per node, beats received per node per second,
    whether the nodes kept their beat rate: false on an overloaded machine)."""
    cpu = sorted(r["cpu"] for r in results)
    sys_share = sum(r["cpu_sys"] for r in results) / max(sum(r["cpu"] for r in results), 1e-9)
    received = sum(r["received"] for r in results) / n
    sent = sum(r["sent"] for r in results)
    print(f"{n:>3} nodes: CPU per node median {cpu[n // 2] * 100:.2f} % max {cpu[-1] * 100:.2f} %"
          f" of one core ({sys_share * 100:.0f} % of it in the kernel); beats sent per node "
          f"{sent / n:.1f}/s, received per node "
          f"{received:.0f}/s, on the segment {sent:.0f}/s of {datagram_bytes(n - 1)} bytes "
          f"(+ 42 bytes of headers); all fresh at the end: "
          f"{all(r['fresh'] == n - 1 for r in results)}; false stale flips "
          f"{sum(r['stale_flips'] for r in results)} (while the observer was not starved: "
          f"{sum(r['unstarved_flips'] for r in results)}); wake-up lag p50 "
          f"{max(r['lag_p50'] for r in results) * 1000:.1f} ms, max "
          f"{max(r['lag_max'] for r in results) * 1000:.0f} ms")
    kept_rate = sent / n >= 0.95 / INTERVAL
    if not kept_rate:
        print(f"      the nodes sent {sent / n:.1f} beats/s of {1 / INTERVAL:.0f}: this machine "
              f"could not run {n} of them on time; their CPU figure is a lower bound")
    return cpu[n // 2], received, kept_rate


def protocol_cost(peers: int = 29, count: int = 20000) -> float:
    """Seconds of CPU to decode, verify and replay-check one beat (no socket, no thread)."""
    now = time.time_ns() // 1_000_000
    names = [f"node{i}" for i in range(peers + 1)]
    wire = [encode(Beat.hearing(names[i % peers], incarnation=1, seq=i, sent_ms=now,
                                hears=names), 1, KEY) for i in range(count)]
    guard, keys = ReplayGuard(), {1: KEY}
    start = time.process_time()
    for data in wire:
        guard.admit(decode(data, keys), now)
    return (time.process_time() - start) / count


def main(seconds: float, sizes: list[int]) -> None:
    from externalip import log  # noqa: PLC0415

    log.setup("json", "warning")
    print(f"heartbeat cost, {seconds:.0f} s windows, beat every {INTERVAL * 1000:.0f} ms, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"decode + MAC + replay check of one beat hearing 29 peers: "
          f"{protocol_cost() * 1e6:.1f} us of CPU (in-process, no socket)")
    measured = {n: report(n, run_size(n, seconds)) for n in sorted(sizes)}
    # CPU = fixed + per_beat x received, least squares over the sizes whose nodes
    # kept their beat rate (all sizes if fewer than two did)
    kept = [point[:2] for point in measured.values() if point[2]]
    points = kept if len(kept) >= 2 else [point[:2] for point in measured.values()]
    xs, ys = [p[1] for p in points], [p[0] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    per_beat = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0
    fixed = my - per_beat * mx
    print(f"CPU model over {len(points)} sizes: {fixed * 100:.2f} % of one core fixed + "
          f"{per_beat * 1e6:.1f} us per received beat")
    for n in (10, 100, 1000):
        rx = (n - 1) / INTERVAL
        size = datagram_bytes(n - 1)
        fits = "" if size <= MAX_DATAGRAM else (
            f" (a beat would be {size} bytes, more than one datagram: full mesh stops here)")
        print(f"  projected {n:>4} nodes: receive {rx:,.0f} beats/s per node, segment "
              f"{n / INTERVAL:,.0f} beats/s, {rx * (size + 42) * 8 / 1e6:.2f} Mbit/s in per node, "
              f"CPU {(fixed + rx * per_beat) * 100:.1f} % of one core per node{fits}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], float(sys.argv[3]))
    else:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0,
             [int(x) for x in sys.argv[2:]] or [3, 10, 30])
