"""The wheel the container image installs: it builds, installs into a clean
virtualenv and its `externalip` command runs there.

The image itself (built with podman from the Dockerfile) is tested in
tests/integration/test_image.py and, run by the chart, tests/e2e/test_image.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # build from a copy of exactly what the Dockerfile copies, so files the
    # image lacks cannot make this pass, and the shared tree gets no build/
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, src)
    (found,) = out.glob("externalip-*.whl")
    return found


def test_wheel_holds_the_package_and_its_command(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "externalip/cli.py" in names
    assert "externalip/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)
    # the runtime only: the lab, the test control plane and the bench are the
    # lab/ distribution, and nothing of theirs may ride along into the image
    assert not any(n.startswith(("externalip_lab/", "externalip/lab/",
                                 "externalip/controlplane/", "bench/")) for n in names)
    metadata = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    # PyYAML is a runtime dependency (lightkube's, and `migrate metallb` reads
    # YAML files); the lab's certificate tooling is not
    assert requires and not any("cryptography" in r for r in requires)
    assert all("<" in r for r in requires), f"runtime dependencies need upper bounds: {requires}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "externalip = externalip.cli:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()


def test_wheel_installs_in_a_clean_venv_and_the_command_runs(
        wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "-q", wheel)
    assert "COMMAND" in run(venv / "bin" / "externalip", "--help")
    # each program's flags resolve with every dependency imported from the venv
    agent_help = run(venv / "bin" / "externalip", "agent", "--help")
    assert "EXTERNALIP_IFACE" in agent_help
    run(venv / "bin" / "python", "-c",
        "import lightkube, pyroute2, prometheus_client, structlog; "
        "import externalip.kube.informer, externalip.health")
