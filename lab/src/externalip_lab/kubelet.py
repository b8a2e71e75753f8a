"""What a kubelet does with a pod spec, for the lab's pods from the image.

`run_argv` turns a pod template's first container into a `podman run`:
command and args, env (values with $(VAR) references, and the fieldRefs our
chart uses), the service
account token projected as files, secret volumes, the security context
(user, read-only root, capabilities, no-new-privileges) and the memory limit,
in the network namespace of its node (hostNetwork) or of its own. Anything
in the spec the lab cannot honour is refused by name, so a chart change the
lab would silently ignore fails its tests instead.

`probe` runs one httpGet probe in the pod's namespace, as a kubelet would:
against the pod's IP and the named port; 200-399 is a pass.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from externalip_lab.netns import entered
from externalip_lab.podman import LABEL

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_SECURITY_KEYS = {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
                  "capabilities", "allowPrivilegeEscalation", "privileged", "seccompProfile"}
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}


class LabPodError(ValueError):
    """A pod spec asks for something the lab's kubelet does not do."""


@dataclass
class Pod:
    name: str  # the lab's process name: agent-node1, scheduler-1
    node: str
    netns: str
    ip: str  # the pod's IP: its node's for hostNetwork, else its own namespace's loopback
    namespace: str
    template: dict[str, Any]
    revision: str  # hash of the template: a rollout replaces pods of another revision
    started: float = 0.0
    ready: bool = False
    restarts: int = 0
    passes: dict[str, int] = field(default_factory=lambda: {"liveness": 0, "readiness": 0})
    failures: dict[str, int] = field(default_factory=lambda: {"liveness": 0, "readiness": 0})
    last_probe: dict[str, float] = field(default_factory=dict)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.template["spec"])

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.spec["containers"][0])


def revision(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: variables defined so far; `$$` escapes;
    an unknown reference stays as written."""
    return _REFERENCE.sub(lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), value)


def env_of(pod: Pod, api_port: int) -> dict[str, str]:
    fields = {"spec.nodeName": pod.node, "metadata.namespace": pod.namespace,
              "metadata.name": pod.name, "status.podIP": pod.ip,
              "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default")}
    # what a kubelet injects into every pod: where the API server is
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api_port)}
    for var in pod.container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
            continue
        path = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if path not in fields:
            raise LabPodError(f"{pod.name}: env {var['name']}: unsupported source {var}")
        env[var["name"]] = fields[path]
    return env


def security_flags(pod: Pod) -> list[str]:
    ctx = {**pod.spec.get("securityContext", {}), **pod.container.get("securityContext", {})}
    unknown = set(ctx) - _SECURITY_KEYS
    if unknown:
        raise LabPodError(f"{pod.name}: securityContext {sorted(unknown)} not supported by the lab")
    flags: list[str] = []
    if "runAsUser" in ctx:
        user = str(ctx["runAsUser"]) + (f":{ctx['runAsGroup']}" if "runAsGroup" in ctx else "")
        flags.append(f"--user={user}")
    if ctx.get("runAsNonRoot") and ctx.get("runAsUser", 0) == 0:
        raise LabPodError(f"{pod.name}: runAsNonRoot without a non-zero runAsUser "
                          "(a kubelet refuses to start it)")
    if ctx.get("readOnlyRootFilesystem"):
        # a kubelet mounts no tmpfs anywhere: the program must need no writable path
        flags += ["--read-only", "--read-only-tmpfs=false"]
    caps = ctx.get("capabilities", {})
    flags += [f"--cap-drop={c.lower()}" for c in caps.get("drop", [])]
    flags += [f"--cap-add={c.lower()}" for c in caps.get("add", [])]
    if ctx.get("allowPrivilegeEscalation") is False:
        flags.append("--security-opt=no-new-privileges")
    if ctx.get("privileged"):
        flags.append("--privileged")
    seccomp = ctx.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        flags.append("--security-opt=seccomp=unconfined")
    elif seccomp != "RuntimeDefault":
        raise LabPodError(f"{pod.name}: seccompProfile {seccomp} not supported by the lab")
    return flags


def memory_bytes(quantity: str) -> int:
    for suffix, factor in _UNITS.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def run_argv(pod: Pod, container: str, prefix: str, mounts: dict[str, Path],
             api_port: int) -> list[str]:
    """The `podman run` of the pod's container; mounts: container path -> host path."""
    spec, c = pod.spec, pod.container
    if len(spec["containers"]) != 1 or spec.get("initContainers"):
        raise LabPodError(f"{pod.name}: the lab runs pods of exactly one container")
    grace = int(spec.get("terminationGracePeriodSeconds", 30))
    argv = ["podman", "run", "--rm", f"--name={container}", f"--label={LABEL}={prefix}",
            "--pull=never", f"--network=ns:/run/netns/{pod.netns}", f"--stop-timeout={grace}",
            # a hostNetwork pod sees its node's name, any other its own
            f"--hostname={pod.node if spec.get('hostNetwork') else pod.name}",
            *security_flags(pod)]
    memory = c.get("resources", {}).get("limits", {}).get("memory")
    if memory:
        argv.append(f"--memory={memory_bytes(str(memory))}")
    env = env_of(pod, api_port)
    for name, value in env.items():
        argv.append(f"--env={name}={value}")
    for target, source in mounts.items():
        argv.append(f"--volume={source}:{target}:ro")
    if c.get("command"):
        argv.append(f"--entrypoint={json.dumps([expand(w, env) for w in c['command']])}")
    return [*argv, c["image"], *(expand(w, env) for w in c.get("args", []))]


def write_files(pod: Pod, root: Path, token: str, ca: bytes,
                secrets: dict[str, dict[str, bytes] | None]) -> dict[str, Path]:
    """The token and secret volumes as files under root; container path -> host path.
    secrets: the data of each Secret the pod names (None: it does not exist)."""
    account = root / "serviceaccount"
    account.mkdir(parents=True, exist_ok=True)
    for name, data in (("token", token.encode()), ("ca.crt", ca),
                       ("namespace", pod.namespace.encode())):
        (account / name).write_bytes(data)
        (account / name).chmod(0o644)  # as a kubelet projects them without fsGroup
    mounts = {TOKEN_DIR: account}
    volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
    for mount in pod.container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" not in volume:
            raise LabPodError(f"{pod.name}: volume {mount['name']}: only secrets are supported")
        content = secrets.get(volume["secret"]["secretName"])
        if content is None and not volume["secret"].get("optional"):
            raise LabPodError(f"{pod.name}: secret {volume['secret']['secretName']} is missing")
        target = root / "volumes" / mount["name"]
        target.mkdir(parents=True, exist_ok=True)
        for key, value in (content or {}).items():
            (target / key).write_bytes(value)
            (target / key).chmod(int(volume["secret"].get("defaultMode", 0o644)))
        mounts[mount["mountPath"]] = target
    return mounts


def port_of(pod: Pod, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in pod.container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise LabPodError(f"{pod.name}: probe names port {port!r}, which the container lacks")


def probe(pod: Pod, spec: dict[str, Any]) -> bool:
    """One httpGet probe from inside the pod's network namespace."""
    get = spec.get("httpGet")
    if get is None:
        raise LabPodError(f"{pod.name}: only httpGet probes are supported, not {spec}")
    port, timeout = port_of(pod, get["port"]), float(spec.get("timeoutSeconds", 1))
    request = (f"GET {get.get('path', '/')} HTTP/1.1\r\nHost: {pod.ip}:{port}\r\n"
               "User-Agent: kube-probe/lab\r\nConnection: close\r\n\r\n").encode()
    try:
        with entered(pod.netns):
            sock = socket.create_connection((pod.ip, port), timeout=timeout)
        with sock:
            sock.sendall(request)
            status = sock.recv(64).split(b" ", 2)
        return len(status) > 1 and 200 <= int(status[1]) < 400
    except (OSError, ValueError):
        return False


def due(pod: Pod, kind: str, now: float) -> dict[str, Any] | None:
    """The pod's probe of this kind if it is time to run it."""
    spec = pod.container.get(f"{kind}Probe")
    if not spec or now < pod.started + float(spec.get("initialDelaySeconds", 0)):
        return None
    if now < pod.last_probe.get(kind, 0.0) + float(spec.get("periodSeconds", 10)):
        return None
    pod.last_probe[kind] = now
    return dict(spec)


def record(pod: Pod, kind: str, spec: dict[str, Any], ok: bool) -> bool:
    """Count the result; True when the failure threshold is reached."""
    if ok:
        pod.passes[kind] += 1
        pod.failures[kind] = 0
    else:
        pod.failures[kind] += 1
    if kind == "readiness":
        if ok and pod.failures[kind] == 0:
            pod.ready = True
        elif pod.failures[kind] >= int(spec.get("failureThreshold", 3)):
            pod.ready = False
    return not ok and pod.failures[kind] >= int(spec.get("failureThreshold", 3))


def now() -> float:
    return time.monotonic()
