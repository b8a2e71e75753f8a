"""Shared pieces of the benchmarks (imported by the bench scripts; running this
file does nothing).

- `Api`: plain HTTPS to the kube-apiserver with the admin identity, counting
  its own requests so they can be subtracted from the server's
  apiserver_request_total (we want the requests of the program under test);
- `ServiceWatch`: one watch on Services, recording when each first got an IP;
- `ClientProbes`: threads living in the client namespace that GET http://IP/
  until the first 200, so "reachable" is seen from where a user stands;
- `Probe`: the lab's prober process (externalip_lab.probe) for failover;
- `summary`: median / p99 / min / max of a list of seconds.

All times are CLOCK_MONOTONIC, one clock for every namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import http.client
import json
import os
import queue
import re
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from externalip_lab.controlplane import ControlPlane
from externalip_lab.probe import ask

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
PROBE_INTERVAL, PROBE_TIMEOUT = 0.01, 0.2  # the same for every figure


def now() -> str:
    """The API's microsecond timestamp format (Lease renewTime, conditions)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def renew_lease(api: Api, leases: dict[str, Any], namespace: str, node: str,
                duration: int) -> None:
    """Renew the agent Lease of a simulated node, as the agent does (created
    on first use); `leases` keeps each Lease's last version between calls."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    spec = {"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": now()}
    current = leases.get(node)
    if current is None:
        api.create(path, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                          "metadata": {"name": node, "namespace": namespace}, "spec": spec})
        current = api.request("GET", f"{path}/{node}")
    current["spec"] = spec
    leases[node] = api.request("PUT", f"{path}/{node}", current)


def enter_netns(netns: str) -> None:
    """Move the calling thread (only it) into a network namespace, for good."""
    with open(f"/run/netns/{netns}") as f:
        if _libc.setns(f.fileno(), _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))


def summary(values: list[float], unit: str = "s") -> str:
    if not values:
        return "no data"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    scale = 1000.0 if unit == "ms" else 1.0
    return (f"median {statistics.median(ordered) * scale:.3g}{unit} p99 {p99 * scale:.3g}{unit} "
            f"min {ordered[0] * scale:.3g}{unit} max {ordered[-1] * scale:.3g}{unit} "
            f"n={len(ordered)}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


# --- the API server ---------------------------------------------------------
def _split(path: str) -> tuple[str, bool]:
    """(resource, names one object?) of an API path."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    return rest[0], len(rest) > 1


class Api:
    """Admin HTTPS to the API server; one keep-alive connection per thread."""

    def __init__(self, cp: ControlPlane) -> None:
        assert cp.certs is not None
        self.port = cp.apiserver_port
        self.ctx = ssl.create_default_context(cafile=str(cp.certs.ca_cert))
        self.ctx.load_cert_chain(str(cp.certs.admin_cert), str(cp.certs.admin_key))
        self.own: Counter[tuple[str, str]] = Counter()  # (verb, resource) we sent
        self._local = threading.local()
        self._lock = threading.Lock()

    def _conn(self) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                               timeout=60)
            self._local.conn = conn
        return conn

    def _count(self, method: str, path: str) -> None:
        resource, named = _split(path)
        verb = method
        if method == "GET":
            verb = "WATCH" if "watch=" in path else ("GET" if named else "LIST")
        with self._lock:
            self.own[(verb, resource)] += 1

    def request(self, method: str, path: str, body: Any = None,
                ok: tuple[int, ...] = (200, 201, 202),
                content_type: str = "application/json") -> Any:
        self._count(method, path)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.status in (429, 503, 504) and attempt < 2 and resp.status not in ok:
                time.sleep(1.0)  # an overloaded API server: a create that timed out may
                continue         # have happened, and its retry answers 409 (create() accepts)
            if resp.status not in ok:
                raise RuntimeError(f"{method} {path}: {resp.status} {payload[:300]!r}")
            return json.loads(payload) if payload else None
        return None

    def create(self, path: str, obj: dict[str, Any]) -> Any:
        return self.request("POST", path, obj, ok=(200, 201, 202, 409))

    def delete(self, path: str) -> None:
        self.request("DELETE", path, ok=(200, 202, 404))

    def metrics(self) -> Counter[tuple[str, str]]:
        """apiserver_request_total summed by (verb, resource)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        totals: Counter[tuple[str, str]] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            totals[(labels.get("verb", ""), resource)] += int(float(line.rsplit(" ", 1)[1]))
        return totals

    def others_requests(self, before: Counter[tuple[str, str]],
                        own_before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
        """Requests the server saw since `before`, minus those this process sent."""
        after = self.metrics()
        delta = after - before
        own = self.own - own_before
        for (verb, resource), sent in own.items():
            left = sent
            for key in list(delta):
                if key[0] == verb and key[1].split("/")[0] == resource:
                    take = min(left, delta[key])
                    delta[key] -= take
                    left -= take
        # The API server's own ClusterIP allocator writes IPAddress objects.
        return Counter({k: n for k, n in delta.items() if n > 0 and k[1] != "ipaddresses"})


class ServiceWatch:
    """Watches Services of one namespace; `got_ip[name] = (t, ip)` at first IP."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.got_ip: dict[str, tuple[float, str]] = {}
        self.on_ip: Callable[[str, str, float], None] | None = None
        self._cond = threading.Condition()
        self._stop = False
        listing = api.request("GET", f"/api/v1/namespaces/{namespace}/services")
        self._rv = listing["metadata"]["resourceVersion"]
        for svc in listing["items"]:
            self._see(svc)
        self._conn: http.client.HTTPSConnection | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _see(self, svc: dict[str, Any]) -> None:
        ingress = (svc.get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []
        name = svc["metadata"]["name"]
        if not ingress or name in self.got_ip:
            return
        t, address = time.monotonic(), ingress[0].get("ip", "")
        with self._cond:
            self.got_ip[name] = (t, address)
            self._cond.notify_all()
        if self.on_ip is not None:
            self.on_ip(name, address, t)

    def forget(self, name: str) -> None:
        with self._cond:
            self.got_ip.pop(name, None)

    def _run(self) -> None:
        while not self._stop:
            path = (f"/api/v1/namespaces/{self.namespace}/services?watch=1"
                    f"&resourceVersion={self._rv}&timeoutSeconds=3600")
            self.api._count("GET", path)
            conn = http.client.HTTPSConnection("127.0.0.1", self.api.port,
                                               context=self.api.ctx, timeout=None)
            self._conn = conn
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                for line in resp:
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        break
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        self.forget(obj["metadata"]["name"])
                    else:
                        self._see(obj)
            except (OSError, ValueError, http.client.HTTPException):
                if self._stop:
                    return
                time.sleep(0.2)
            finally:
                conn.close()

    def wait(self, names: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(n in self.got_ip for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        self._stop = True
        if self._conn is not None and self._conn.sock is not None:
            with contextlib.suppress(OSError):
                self._conn.sock.shutdown(2)


# --- the client's view ---------------------------------------------------------
def http_get(ip: str, timeout: float) -> str | None:
    """The lab prober's GET: the node that took the request in (the answer comes
    from a pod through kube-proxy), or None."""
    answer = ask(ip, timeout)
    return answer.via if answer else None


class ClientProbes:
    """Worker threads inside the client namespace; `reach(ip, deadline, done)`
    polls http://ip/ and calls done(t, node) at the first 200 (or (nan, None))."""

    def __init__(self, netns: str, workers: int) -> None:
        self._q: queue.Queue[tuple[str, float, Callable[[float, str | None], None]] | None]
        self._q = queue.Queue()
        self._threads = [threading.Thread(target=self._work, args=(netns,), daemon=True)
                         for _ in range(workers)]
        for t in self._threads:
            t.start()

    def _work(self, netns: str) -> None:
        enter_netns(netns)
        while (job := self._q.get()) is not None:
            address, deadline, done = job
            while time.monotonic() < deadline:
                node = http_get(address, PROBE_TIMEOUT)
                if node is not None:
                    done(time.monotonic(), node)
                    break
                time.sleep(PROBE_INTERVAL)
            else:
                done(float("nan"), None)

    def reach(self, address: str, deadline: float,
              done: Callable[[float, str | None], None]) -> None:
        self._q.put((address, deadline, done))

    def start(self, address: str, timeout: float) -> Pending:
        """Start polling now; Pending.wait() gives (t of first 200, node) or None."""
        pending = Pending()
        self.reach(address, time.monotonic() + timeout, pending.set)
        return pending

    def close(self) -> None:
        for _ in self._threads:
            self._q.put(None)


class Pending:
    def __init__(self) -> None:
        self._done = threading.Event()
        self.result: tuple[float, str] | None = None

    def set(self, t: float, node: str | None) -> None:
        if node is not None:
            self.result = (t, node)
        self._done.set()

    def wait(self, timeout: float | None = None) -> tuple[float, str] | None:
        self._done.wait(timeout)
        return self.result


class Probe:
    """externalip_lab.probe in the client namespace; events = [(t, node or None)]."""

    def __init__(self, netns: str, address: str) -> None:
        self.events: list[tuple[float, str | None]] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "externalip_lab.probe",
             address, str(PROBE_INTERVAL), str(PROBE_TIMEOUT)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._cond:
                self.events.append((event["t"], event["node"]))
                self._cond.notify_all()

    def first(self, pred: Callable[[str | None], bool], after: float,
              timeout: float) -> tuple[float, str | None] | None:
        """The first change at or after `after` to a node satisfying pred; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, node in self.events:
                    if t >= after and pred(node):
                        return t, node
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    def snapshot(self) -> list[tuple[float, str | None]]:
        with self._cond:
            return list(self.events)

    def current(self) -> str | None:
        with self._cond:
            return self.events[-1][1] if self.events else None

    def silence(self, after: float) -> float:
        """The longest time after `after` during which no node answered."""
        with self._cond:
            events = [(t, n) for t, n in self.events if t >= after]
        if not events:  # no change since `after`: it answered all along
            return 0.0
        ends = [t for t, _ in events[1:]] + [time.monotonic()]
        return max((end - t for (t, n), end in zip(events, ends, strict=True) if n is None),
                   default=0.0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # our own child, by PID
        self.proc.wait()


def timeline(probe: Probe, t0: float, victim: str | None, span: float) -> dict[str, Any]:
    """What the client saw around a fault at t0: who answered from 0.5 s before
    until `span` after, as changes (seconds after t0, "victim" / "other" / None),
    for the failover plots (bench/plots.py)."""
    events = probe.snapshot()
    before = [n for t, n in events if t < t0 - 0.5]
    out = [(-0.5, before[-1] if before else victim)]
    out += [(t - t0, n) for t, n in events if t0 - 0.5 <= t <= t0 + span]
    return {"span": span, "events": [(t, None if n is None else "victim" if n == victim
                                      else "other") for t, n in out]}


def rss_cpu(pid: int) -> tuple[float, float]:
    """(RSS in MiB, user+system CPU seconds) of a process and its children."""
    rss_kb, ticks = 0, 0
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return rss_kb / 1024, ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                for k in kids:
                    found += [int(k), *_children(int(k))]
    return found


class ArpWatch:
    """Asks "who has IP?" from the client every 10 ms and records every reply
    as (t, MAC): two MACs answering in overlapping time is a split brain."""

    def __init__(self, netns: str, address: str, sender: str = "192.0.2.100") -> None:
        self.replies: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._args = (netns, address, sender)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        netns, address, sender = self._args
        enter_netns(netns)
        target = socket.inet_aton(address)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
            s.bind(("eth0", 0))
            mac: bytes = s.getsockname()[4]
            s.settimeout(0.002)
            request = (b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
                       + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                       + mac + socket.inet_aton(sender) + b"\0" * 6 + target)
            next_send = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    s.send(request)
                    next_send = now + 0.01
                try:
                    frame = s.recv(128)
                except OSError:
                    continue
                if frame[20:22] == b"\x00\x02" and frame[28:32] == target:
                    self.replies.append((time.monotonic(), frame[22:28].hex(":")))

    def overlap(self, old: str, after: float) -> float:
        """Seconds after `after` during which both `old` and another MAC answered:
        from the new MAC's first reply to the old one's last."""
        new_first = min((t for t, m in self.replies if t >= after and m != old), default=None)
        old_last = max((t for t, m in self.replies if t >= after and m == old), default=None)
        if new_first is None or old_last is None:
            return 0.0
        return max(0.0, old_last - new_first)

    def mac_at(self, t0: float) -> str | None:
        before = [m for t, m in self.replies if t <= t0]
        return before[-1] if before else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@contextlib.contextmanager
def scheduler_bench_plane(services_ns: str) -> Iterator[tuple[Any, Api, str]]:
    """A control plane for scheduler benches: CRDs, the scheduler's account and
    RBAC, a big IPv6 pool, the Services' namespace; yields (cp, api, kubeconfig
    of the scheduler's service account)."""
    import yaml  # noqa: PLC0415 - only the scheduler benches need it

    from externalip_lab.controlplane import ControlPlane  # noqa: PLC0415

    repo = Path(__file__).resolve().parents[1]
    with ControlPlane() as cp:
        cp.install_crds(repo / "deploy" / "crds")
        cp.ensure_namespace("externalip")
        cp.ensure_namespace(services_ns)
        cp.apply(repo / "deploy" / "serviceaccounts.yaml")
        cp.apply(repo / "deploy" / "rbac" / "scheduler.yaml")
        cp.apply(yaml.safe_dump({"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaimPool",
                                 "metadata": {"name": "big"},
                                 "spec": {"cidr": "2001:db8:100::/104"}}))
        yield cp, Api(cp), cp.service_account_kubeconfig("externalip", "externalip-scheduler")


# --- the agent rig (bench/agent_latency.py, bench/agent_arp_flood.py) -------------
class AgentRig:
    """A real control plane and `nodes` node namespaces on one bridge with a
    client namespace; in each node an API proxy and the agent, as a process
    under its shipped service account, with data-plane failover on (one
    heartbeat key for all). Node i is `names[i]` on link `devs[i]`, address
    192.0.2.(10+i); the client is 192.0.2.20 on `cdev`. `admin` is the admin
    kubeconfig. Everything is removed on exit, even on failure."""

    def __init__(self, stem: str, nodes: int = 1, agent_args: tuple[str, ...] = (),
                 before_agents: Callable[[AgentRig], None] | None = None,
                 *, failover: bool = True) -> None:
        self.prefix = stem + os.urandom(2).hex()
        self.count, self.agent_args, self._before = nodes, agent_args, before_agents
        self.failover = failover
        self.names = [f"{self.prefix}-node" if i == 0 else f"{self.prefix}-peer{i}"
                      for i in range(nodes)]
        self.devs = [f"{self.prefix}n{i}" for i in range(nodes)]
        self.cdev = f"{self.prefix}c"
        self.agents: list[subprocess.Popen[bytes]] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> AgentRig:
        import tempfile  # noqa: PLC0415

        from externalip_lab.apiproxy import ApiProxy  # noqa: PLC0415
        from externalip_lab.netns import NetnsSet, ip  # noqa: PLC0415

        repo = Path(__file__).resolve().parents[1]
        try:
            self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
            cp = self.cp = self._stack.enter_context(ControlPlane(self.tmp / "cp"))
            cp.install_crds(repo / "deploy" / "crds")
            cp.ensure_namespace("externalip")
            cp.apply(repo / "deploy" / "rbac" / "agent.yaml")
            ns = self.ns = self._stack.enter_context(NetnsSet(self.prefix))
            lan, self.client = ns.namespace("lan"), ns.namespace("client")
            self.nodes = [ns.namespace(f"node{i}") for i in range(self.count)]
            ns.bridge(lan, "br0")
            ends = [*zip(self.nodes, self.devs, strict=True), (self.client, self.cdev)]
            for i, (netns, dev) in enumerate(ends):
                ns.veth(netns, dev, lan, f"{self.prefix}l{i}")
                ip("link", "set", f"{self.prefix}l{i}", "master", "br0", netns=lan)
            for i, (netns, dev) in enumerate(zip(self.nodes, self.devs, strict=True)):
                ns.addr(netns, dev, f"192.0.2.{10 + i}/24")
            ns.addr(self.client, self.cdev, "192.0.2.20/24")
            keys = self.tmp / "peer-keys"
            keys.mkdir()
            (keys / "1").write_text(os.urandom(32).hex())
            if self._before is not None:
                self._before(self)
            for netns, dev, name in zip(self.nodes, self.devs, self.names, strict=True):
                proxy = ApiProxy(netns, cp.apiserver_port).start()
                self._stack.callback(proxy.stop)
                kubeconfig = cp.service_account_kubeconfig(
                    "externalip", "externalip-agent",
                    server=f"https://127.0.0.1:{proxy.listen_port}")
                log = (self.tmp / f"{name}.log").open("wb")
                self.agents.append(ns.popen(netns, [
                    sys.executable, "-m", "externalip", "agent", f"--kubeconfig={kubeconfig}",
                    f"--iface={dev}", f"--hostname={name}", "--namespace=externalip",
                    f"--peer-key-dir={keys if self.failover else ''}", "--metrics-addr=",
                    "--log-level=warning",
                    *self.agent_args], stdout=log, stderr=log))
            self._stack.callback(self._stop_agents)
        except BaseException:
            self._stack.close()
            raise
        self.admin = str(cp.kubeconfig)
        return self

    @property
    def agent(self) -> subprocess.Popen[bytes]:
        return self.agents[0]

    def log(self, i: int = 0) -> str:
        return (self.tmp / f"{self.names[i]}.log").read_text(errors="replace")

    def _stop_agents(self) -> None:
        for agent in self.agents:  # our own children, by PID
            if agent.poll() is None:
                agent.terminate()
        for agent in self.agents:
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.wait(20)

    def __exit__(self, *exc: object) -> None:
        keep = os.environ.get("EXTERNALIP_BENCH_KEEP_LOGS")
        if keep:  # for post-mortems: the agents' logs outlive the rig
            import shutil  # noqa: PLC0415

            Path(keep).mkdir(parents=True, exist_ok=True)
            for name in self.names:
                with contextlib.suppress(OSError):
                    shutil.copy(self.tmp / f"{name}.log", keep)
        self._stack.close()


def claim_object(name: str, cidr: str, node: str, standbys: tuple[str, ...] = ()) -> Any:
    """An IpClaim as the scheduler writes it (labels for the agents' watches)."""
    from lightkube.models.meta_v1 import ObjectMeta  # noqa: PLC0415

    from externalip.core.model import ClaimSpec, claim_labels  # noqa: PLC0415
    from externalip.kube.resources import IpClaimResource  # noqa: PLC0415

    spec: dict[str, Any] = {"cidr": cidr, "nodeName": node}
    if standbys:
        spec["standbys"] = list(standbys)
    return IpClaimResource(apiVersion="ipcontroller.ext/v1", kind="IpClaim",
                           metadata=ObjectMeta(name=name,
                                               labels=claim_labels(ClaimSpec.from_dict(spec))),
                           spec=spec)


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick
