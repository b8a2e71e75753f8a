"""Where the Kubernetes binaries are, building them on first use.

They are built from the Go module proxy by tools/build-k8s.sh into a cache
outside the checkout (~/.cache/externalip/k8s-<version>-etcd-<version>/), so
only the first run on a machine pays for the build.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build-k8s.sh"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    kube_proxy: Path


class BinariesUnavailableError(RuntimeError):
    pass


def _in(directory: Path) -> Binaries:
    return Binaries(directory / "etcd", directory / "kube-apiserver", directory / "kubectl",
                    directory / "kube-proxy")


def ensure() -> Binaries:
    """Return the binaries, building any that are missing (progress goes to stderr)."""
    override = os.environ.get("EXTERNALIP_K8S_BIN")
    if override:
        found = _in(Path(override))
        if not all(p.exists() for p in (found.etcd, found.kube_apiserver, found.kubectl,
                                        found.kube_proxy)):
            raise BinariesUnavailableError(
                f"EXTERNALIP_K8S_BIN={override} lacks etcd, kube-apiserver, kubectl or kube-proxy"
            )
        return found
    if not BUILD_SCRIPT.exists():
        raise BinariesUnavailableError(
            f"{BUILD_SCRIPT} not found: run from a checkout or set EXTERNALIP_K8S_BIN"
        )
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise BinariesUnavailableError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    return _in(Path(result.stdout.strip().splitlines()[-1]))
