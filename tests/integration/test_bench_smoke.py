"""Keeps the benchmark scripts alive in CI: the physical-limit benchmark runs
two rounds and prints its figures, and leaves no namespace behind. (Figures
are never asserted on: CI machines are noisy.)"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from externalip_lab.controlplane.binaries import REPO_ROOT
from externalip_lab.topology import ip

pytestmark = pytest.mark.netns


def test_physical_limit_runs_and_cleans_up() -> None:
    result = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "physical_limit.py"), "2"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "physical limit, reach" in result.stdout
    assert "physical limit, failover" in result.stdout
    # its own lab's prefix: other benchmarks on the machine may run labs meanwhile
    prefix = re.search(r"\(prefix (eipb\w+)\)", result.stderr)
    assert prefix is not None, result.stderr
    assert not [n for n in ip("netns", "list").stdout.split()
                if n.startswith(prefix.group(1) + "-")]
