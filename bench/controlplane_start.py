"""Warm start time of the test control plane (etcd + kube-apiserver ready, CRDs
established), median over several runs. The binaries must already be built.

    .venv/bin/python bench/controlplane_start.py [runs]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from externalip_lab.controlplane import ControlPlane

CRDS = Path(__file__).resolve().parents[1] / "deploy" / "crds"


def main(runs: int) -> None:
    ready, with_crds = [], []
    for _ in range(runs):
        start = time.monotonic()
        with ControlPlane() as cp:
            ready.append(time.monotonic() - start)
            cp.install_crds(CRDS)
            with_crds.append(time.monotonic() - start)
    print(f"control plane ready: median {statistics.median(ready):.2f}s "
          f"(min {min(ready):.2f}, max {max(ready):.2f}, runs {runs})")
    print(f"ready + CRDs established: median {statistics.median(with_crds):.2f}s "
          f"(min {min(with_crds):.2f}, max {max(with_crds):.2f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
