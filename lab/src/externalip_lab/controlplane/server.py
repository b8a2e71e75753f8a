"""Start and stop etcd + kube-apiserver on free loopback ports, envtest style.

No controller-manager runs: namespaces never finish deleting and default
service accounts are not created; callers create what they need.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import yaml

from externalip import log
from externalip_lab.controlplane import binaries, certs
from externalip_lab.processes import StartStop, stop_process

_log = log.get(__name__)

# ClusterIPs, from RFC 2544's benchmarking range and the documentation range
# (never private ranges; the lab's pods use 198.18.0.0/16, the benchmarks'
# 10,000-address pool 198.19.128.0/17); dual-stack so that RequireDualStack
# Services are accepted. A /18 holds the benchmarks' 10,000 Services.
SERVICE_CIDR = "198.19.0.0/18,2001:db8:96::/112"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane(StartStop):
    """One etcd and one kube-apiserver, with an admin kubeconfig.

    Use as a context manager, or call start() and stop(); stop() removes the
    data directory and is safe to call after a failed start.
    """

    def __init__(self, workdir: Path | None = None, *, keep: bool = False) -> None:
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="externalip-cp-"))
        self._keep = keep
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self.bin = binaries.ensure()
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        self.certs: certs.CertFiles | None = None

    # --- lifecycle ---------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def start(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        self.certs = certs.generate(self.dir / "pki")
        self._start_etcd()
        self.start_apiserver(timeout=timeout)
        self._write_admin_kubeconfig()
        _log.info("control plane ready", server=self.server, dir=str(self.dir),
                  seconds=round(time.monotonic() - started, 2))

    def stop(self) -> None:
        for name in ("kube-apiserver", "etcd"):
            self._stop(name)
        for f in self._logs.values():
            f.close()
        self._logs.clear()
        if self._own_dir and not self._keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str]) -> None:
        logf = self._logs.get(name) or open(self.dir / f"{name}.log", "ab")  # noqa: SIM115
        self._logs[name] = logf
        self._procs[name] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)

    def _stop(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            stop_process(proc, wait=15)

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.poll() is None]

    def pid(self, name: str) -> int:
        return self._procs[name].pid

    def _start_etcd(self) -> None:
        peer = free_port()
        client = f"http://127.0.0.1:{self.etcd_port}"
        self._spawn("etcd", [
            str(self.bin.etcd),
            "--name=default",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync=true",  # throw-away data: durability costs seconds per test
            "--log-level=warn",
        ])

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """(Re)start kube-apiserver on the same port; also used to test watch recovery."""
        assert self.certs is not None
        c = self.certs
        self._spawn("kube-apiserver", [
            str(self.bin.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--cert-dir={self.dir / 'pki'}",
            f"--tls-cert-file={c.serving_cert}",
            f"--tls-private-key-file={c.serving_key}",
            f"--client-ca-file={c.ca_cert}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={c.sa_public}",
            f"--service-account-signing-key-file={c.sa_private}",
            "--allow-privileged=true",
            # the advertise address is loopback, which the endpoint reconciler refuses
            "--endpoint-reconciler-type=none",
            "--v=1",
        ])
        self._wait_ready(timeout)

    def stop_apiserver(self) -> None:
        self._stop("kube-apiserver")

    def restart_apiserver(self, timeout: float = 90.0) -> None:
        self.stop_apiserver()
        self.start_apiserver(timeout=timeout)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        ctx = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        ctx.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        return ctx

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ctx = self._ssl_context()
        last = "not started"
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {proc.returncode}; its log ends:\n"
                        + self.log_tail(name)
                    )
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout}s: {last}")

    # --- identities --------------------------------------------------------
    def _kubeconfig_dict(self, user: dict[str, Any], server: str | None = None) -> dict[str, Any]:
        assert self.certs is not None
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {
                "server": server or self.server,
                "certificate-authority": str(self.certs.ca_cert)}}],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "user"}}],
            "current-context": "lab",
        }

    def _write_admin_kubeconfig(self) -> None:
        assert self.certs is not None
        cfg = self._kubeconfig_dict({"client-certificate": str(self.certs.admin_cert),
                                     "client-key": str(self.certs.admin_key)})
        self.kubeconfig.write_text(yaml.safe_dump(cfg))

    def kubectl(self, *args: str, input: str | None = None, kubeconfig: Path | None = None,
                check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def apply(self, source: str | Path, kubeconfig: Path | None = None) -> str:
        """kubectl apply a file, a directory (-k if it has a kustomization) or YAML text."""
        if isinstance(source, Path):
            flag = "-k" if (source / "kustomization.yaml").exists() else "-f"
            return self.kubectl("apply", "--server-side", flag, str(source),
                                kubeconfig=kubeconfig).stdout
        return self.kubectl("apply", "--server-side", "-f", "-", input=source,
                            kubeconfig=kubeconfig).stdout

    def ensure_namespace(self, name: str) -> None:
        self.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": name}}))

    def service_account_kubeconfig(self, namespace: str, name: str, *,
                                   server: str | None = None,
                                   duration: str = "24h") -> Path:
        """A kubeconfig carrying a TokenRequest token of that service account.

        The account (and namespace) is created if missing, so programs can run
        under the shipped RBAC exactly as their pods would.
        """
        self.ensure_namespace(namespace)
        self.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount",
                                   "metadata": {"name": name, "namespace": namespace}}))
        token = self.kubectl("create", "token", name, "-n", namespace,
                             f"--duration={duration}").stdout.strip()
        path = self.dir / f"sa-{namespace}-{name}-{abs(hash(server or ''))}.kubeconfig"
        path.write_text(yaml.safe_dump(self._kubeconfig_dict({"token": token}, server)))
        return path

    def install_crds(self, crd_dir: Path, timeout: float = 60.0) -> None:
        """Apply the CRDs and wait until each can be listed: Established comes
        before the storage behind it is ready (lists answer 429 meanwhile)."""
        self.apply(crd_dir)
        self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                     "crd", "--all")
        crds = json.loads(self.kubectl("get", "crd", "-o", "json").stdout)["items"]
        kinds = ",".join(f"{c['spec']['names']['plural']}.{c['spec']['group']}" for c in crds)
        deadline = time.monotonic() + timeout
        while self.kubectl("get", kinds, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"custom resources {kinds} not listable in {timeout}s")
            time.sleep(0.2)


@contextlib.contextmanager
def running(workdir: Path | None = None) -> Any:
    with ControlPlane(workdir) as cp:
        yield cp
