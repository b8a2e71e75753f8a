"""The lab's programs from the container image, as the chart deploys them.

`helm install` puts the chart into the lab's API server (CRDs, RBAC, Secret,
DaemonSet, Deployment); then this module plays the parts a cluster would:
- the DaemonSet and Deployment controllers: one agent pod per node the
  nodeSelector matches, `replicas` scheduler pods; when `helm upgrade` (or
  `helm rollback`) changes a pod template, the agents are replaced one node at
  a time (maxUnavailable 1), each waiting for the new pod to be ready, then
  the schedulers (a new one first, ready, then an old one goes: maxSurge 1);
- the kubelet (kubelet.py): every pod is a `podman run` of its spec in its
  node's network namespace (hostNetwork) or its own (the schedulers, each
  with an API proxy on its loopback); liveness and readiness probes are polled
  on their periods, and a container whose liveness fails, or that exits, is
  restarted.
A pod killed on purpose (`lab fault kill-agent`, a dead node) stays dead until
the lab restores it, as a pod on a dead node would.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from externalip import log
from externalip_lab import kubelet, podman
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane.binaries import REPO_ROOT
from externalip_lab.kubelet import Pod
from externalip_lab.topology import ip, node_addresses

if TYPE_CHECKING:
    from externalip_lab.lab import Lab

_log = log.get(__name__)
CHART = REPO_ROOT / "charts" / "externalip"
RELEASE = "externalip"
READY_TIMEOUT = 90.0


def helm_binary() -> str:
    build = subprocess.run(["bash", str(REPO_ROOT / "tools" / "build-helm.sh")],
                           stdout=subprocess.PIPE, text=True, check=True, timeout=1800)
    return build.stdout.strip().splitlines()[-1]


class ImagePods:
    def __init__(self, lab: Lab, image: str, values: tuple[str, ...] = ()) -> None:
        self.lab = lab
        self.image = image
        self.values = values
        self.helm_bin = helm_binary()
        self.pods: dict[str, Pod] = {}
        self.events: list[tuple[float, str]] = []  # what the controllers did, when
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._netns: dict[str, ApiProxy] = {}
        self._backoff: dict[str, float] = {}
        self.rolling = False  # a pod is being replaced

    # --- helm --------------------------------------------------------------
    def helm(self, *args: str) -> str:
        assert self.lab.cp is not None
        result = subprocess.run([self.helm_bin, *args, "--namespace", self.lab.namespace,
                                 f"--kubeconfig={self.lab.cp.kubeconfig}"],
                                capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def set_args(self, image: str, *extra: str) -> list[str]:
        repository, _, tag = image.rpartition(":")
        sets = [f"image.repository={repository}", f"image.tag={tag}", "interface=eth0",
                *self.values, *extra]
        return [arg for s in sets for arg in ("--set", s)]

    def install(self) -> None:
        """The chart, as a user installs it, into the lab's API server."""
        self.helm("install", RELEASE, str(CHART), "--create-namespace",
                  *self.set_args(self.image))
        assert self.lab.cp is not None
        self.lab.cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                            "crd", "--all")
        self.event(f"helm install: {self.image}")

    def upgrade(self, image: str) -> None:
        self.helm("upgrade", RELEASE, str(CHART), *self.set_args(image))
        self.event(f"helm upgrade: {image}")

    def rollback(self) -> None:
        self.helm("rollback", RELEASE)
        self.event("helm rollback")

    def roll(self, image: str | None) -> list[str]:
        """`helm upgrade` to image (None: `helm rollback`) and wait until every
        pod runs the new template; the pods replaced, in order."""
        since = len(self.events)
        if image is None:
            self.rollback()
        else:
            self.upgrade(image)
        self.wait_rolled_out()  # pods at the old revision count as not rolled out
        return [text.split()[0] for _, text in self.events[since:] if " replaced" in text]

    def event(self, text: str) -> None:
        self.events.append((time.monotonic(), text))
        _log.info("image pods", what=text)

    # --- the controllers ---------------------------------------------------
    def workloads(self) -> list[dict[str, Any]]:
        assert self.lab.cp is not None
        out = self.lab.cp.kubectl("get", "daemonsets,deployments", "-n", self.lab.namespace,
                                  "-o", "json").stdout
        return list(json.loads(out)["items"])

    def desired(self) -> list[Pod]:
        """The pods the workloads ask for, by name, at their current templates."""
        pods = []
        for workload in self.workloads():
            template = workload["spec"]["template"]
            container = template["spec"]["containers"][0]["name"]
            rev = kubelet.revision(template)
            if workload["kind"] == "DaemonSet":
                selector = template["spec"].get("nodeSelector", {})
                for index, node in enumerate(self.lab.node_names, start=1):
                    if self.lab.node_labels(node).items() >= selector.items():
                        netns, node_ip = self.lab.topology.node_ns(node), node_addresses(index)[0]
                        pods.append(Pod(f"{container}-{node}", node, netns, node_ip,
                                        self.lab.namespace, template, rev))
            else:
                for i in range(1, int(workload["spec"].get("replicas", 1)) + 1):
                    pods.append(self._own_netns_pod(f"{container}-{i}", template, rev))
        return pods

    def _own_netns_pod(self, name: str, template: dict[str, Any], rev: str) -> Pod:
        netns = f"{self.lab.prefix}-{name}"
        node = self.lab.node_names[(int(name.rsplit("-", 1)[1]) - 1) % len(self.lab.node_names)]
        return Pod(name, node, netns, "127.0.0.1", self.lab.namespace, template, rev)

    def start(self) -> None:
        """Every pod of the installed chart running and ready; then the loops."""
        for pod in self.desired():
            self.launch(pod)
        self.wait_ready(list(self.pods))
        for loop in (self._prober, self._controller):
            thread = threading.Thread(target=loop, name=f"lab-{loop.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        with self.lock:
            for name in list(self.pods):
                self.lab.stop_process(name)
        podman.remove_containers(self.lab.prefix)
        for netns, proxy in self._netns.items():
            proxy.stop()
            ip("netns", "del", netns, check=False)

    def namespaces(self) -> list[str]:
        return list(self._netns)

    def launch(self, pod: Pod) -> None:
        """Start (or restart) the pod's container from its spec."""
        cp = self.lab.cp
        assert cp is not None and cp.certs is not None
        with self.lock:
            if pod.ip == "127.0.0.1" and pod.netns not in self._netns:
                ip("netns", "add", pod.netns)
                ip("-n", pod.netns, "link", "set", "lo", "up")
                self._netns[pod.netns] = ApiProxy(pod.netns, cp.apiserver_port,
                                                  self.lab.proxy_port).start()
            account = pod.spec.get("serviceAccountName", "default")
            token = cp.kubectl("create", "token", account, "-n", pod.namespace,
                                        "--duration=24h").stdout.strip()
            mounts = kubelet.write_files(pod, self.lab.dir / "pods" / pod.name, token,
                                         cp.certs.ca_cert.read_bytes(),
                                         {name: self.secret(name) for name in self._secrets(pod)})
            argv = kubelet.run_argv(pod, self.container(pod.name), self.lab.prefix, mounts,
                                    self.lab.proxy_port)
            podman.remove_containers(self.lab.prefix, self.container(pod.name))
            self.lab.spawn_container(pod.name, self.container(pod.name), argv)
            pod.started, pod.ready = time.monotonic(), False
            pod.failures = {"liveness": 0, "readiness": 0}
            pod.last_probe = {}
            self.pods[pod.name] = pod

    def container(self, name: str) -> str:
        return f"{self.lab.prefix}-{name}"

    def _secrets(self, pod: Pod) -> list[str]:
        return [v["secret"]["secretName"] for v in pod.spec.get("volumes", []) if "secret" in v]

    def secret(self, name: str) -> dict[str, bytes] | None:
        assert self.lab.cp is not None
        got = self.lab.cp.kubectl("get", "secret", name, "-n", self.lab.namespace, "-o", "json",
                                  check=False)
        if got.returncode != 0:
            return None
        data = json.loads(got.stdout).get("data", {})
        return {key: base64.b64decode(value) for key, value in data.items()}

    def restart(self, name: str) -> None:
        """The pod again, from the spec it ran (a kubelet restarting its container)."""
        with self.lock:
            pod = self.pods[name]
            self.lab.stop_process(name)
            pod.restarts += 1
            self.launch(pod)

    def wait_ready(self, names: list[str], timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.pods[n].ready for n in names):
            if time.monotonic() > deadline:
                late = [n for n in names if not self.pods[n].ready]
                logs = "\n".join(f"--- {n}:\n{self.lab.log_of(n)[-1500:]}" for n in late)
                raise TimeoutError(f"pods {late} not ready within {timeout}s\n{logs}")
            if self._threads:
                time.sleep(0.2)
            else:  # before the prober runs (start): probe here
                self._probe_all()
                time.sleep(0.2)

    def _prober(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._probe_all()
            except Exception as exc:  # a lab thread must outlive one bad round
                _log.error("lab kubelet round failed", error=str(exc))

    def _probe_all(self) -> None:
        now = time.monotonic()
        for pod in list(self.pods.values()):
            proc = self.lab.procs.get(pod.name)
            if proc is None:
                continue  # killed on purpose: stays down until the lab restores it
            if proc.popen.poll() is not None:
                if now >= self._backoff.get(pod.name, 0.0):
                    self.event(f"{pod.name} exited ({proc.popen.returncode}): restarting")
                    self._backoff[pod.name] = now + min(10.0, 1.0 * 2 ** pod.restarts)
                    self.restart(pod.name)
                continue
            for kind in ("liveness", "readiness"):
                spec = kubelet.due(pod, kind, now)
                if spec is None:
                    continue
                failed = kubelet.record(pod, kind, spec, kubelet.probe(pod, spec))
                if failed and kind == "liveness":
                    self.event(f"{pod.name} failed its liveness probe: restarting")
                    self.restart(pod.name)
                    break

    def _controller(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.reconcile()
            except Exception as exc:
                _log.error("lab controllers round failed", error=str(exc))

    def reconcile(self) -> None:
        """Roll pods whose template changed: agents node by node, then schedulers."""
        for workload in sorted(self.workloads(), key=lambda w: w["kind"] != "DaemonSet"):
            template = workload["spec"]["template"]
            prefix = template["spec"]["containers"][0]["name"] + "-"
            rev = kubelet.revision(template)
            for name in sorted(self.pods, key=_ordinal):
                pod = self.pods[name]
                if self._stop.is_set() or not name.startswith(prefix) or pod.revision == rev:
                    continue
                self.rolling = True
                try:
                    if workload["kind"] == "DaemonSet":
                        self._replace(pod, template, rev)
                    else:
                        self._surge(pod, template, rev)
                finally:
                    self.rolling = False

    def _replace(self, old: Pod, template: dict[str, Any], rev: str) -> None:
        """maxUnavailable 1: the node's pod stops (its grace period), the new one
        starts and is ready before the next node's turn."""
        grace = float(old.spec.get("terminationGracePeriodSeconds", 30))
        self.lab.stop_process(old.name, wait=grace)
        new = Pod(old.name, old.node, old.netns, old.ip, old.namespace, template, rev)
        self.launch(new)
        self.wait_ready([new.name])
        self.event(f"{new.name} replaced (revision {rev})")

    def _surge(self, old: Pod, template: dict[str, Any], rev: str) -> None:
        """maxSurge 1, maxUnavailable 0: a new pod, ready, then the old one goes."""
        base = old.name.rsplit("-", 1)[0]
        index = 1 + max(int(n.rsplit("-", 1)[1]) for n in self.pods if n.startswith(base + "-"))
        new = self._own_netns_pod(f"{base}-{index}", template, rev)
        self.launch(new)
        self.wait_ready([new.name])
        with self.lock:
            self.lab.stop_process(old.name)
            self.pods.pop(old.name)
        self.event(f"{old.name} replaced by {new.name} (revision {rev})")

    def rolled_out(self) -> bool:
        """Every running pod is at its workload's current revision and ready,
        and no pod is being replaced."""
        if self.rolling:
            return False
        current = {w["spec"]["template"]["spec"]["containers"][0]["name"]:
                   kubelet.revision(w["spec"]["template"]) for w in self.workloads()}
        return all(pod.ready and pod.revision == current.get(pod.name.rsplit("-", 1)[0])
                   for pod in list(self.pods.values()) if pod.name in self.lab.procs)

    def wait_rolled_out(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.rolled_out():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rollout not done in {timeout}s: {self.events[-5:]}")
            time.sleep(0.5)


def _ordinal(name: str) -> tuple[str, int, str]:
    """scheduler-9 before scheduler-10; agent-node1 before agent-node2."""
    base, _, tail = name.rpartition("-")
    return (base, int(tail), "") if tail.isdigit() else (base, 0, tail)
