"""The built image (`make image`): the runtime only, exactly the locked
dependencies, non-root by default, and its command runs on a read-only root
with every capability dropped. The chart running it is tests/e2e/test_image.py."""

from __future__ import annotations

import shutil

import pytest

from externalip_lab import podman
from tests.unit.test_lock import locked

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    shutil.which("podman") is None, reason="podman is installed by make deps")]


@pytest.fixture(scope="module")
def image() -> str:
    return podman.build_image()  # seconds when make deps built it already


def run(image: str, *argv: str, entrypoint: str = "", check: bool = True) -> str:
    args = ["run", "--rm", "--network=none", "--read-only", "--read-only-tmpfs=false",
            "--cap-drop=all", *([f"--entrypoint={entrypoint}"] if entrypoint else []),
            image, *argv]
    result = podman.podman(*args, check=False)
    assert not check or result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_image_holds_exactly_the_locked_dependencies_and_the_package(image: str) -> None:
    listing = run(image, "-c", "import importlib.metadata as m\n"
                  "for d in m.distributions(): print(d.name, d.version)", entrypoint="python3")
    installed = {name.lower().replace("_", "-"): version
                 for name, version in (line.split() for line in listing.splitlines())}
    expected = {name: str(version) for name, (version, _) in locked().items()}
    assert installed.pop("externalip") == "0.1.0"
    assert installed == expected


def test_image_has_no_build_tools_no_lab_and_runs_as_non_root(image: str) -> None:
    probe = ("import importlib.util as u, shutil, os\n"
             "modules = ('pip', 'setuptools', 'externalip_lab', 'pytest')\n"
             "print([m for m in modules if u.find_spec(m)])\n"
             "print([b for b in ('pip', 'pip3', 'gcc', 'cc', 'make') if shutil.which(b)])\n"
             "print(os.getuid())")
    assert run(image, "-c", probe, entrypoint="python3").split("\n")[:3] == ["[]", "[]", "65532"]


def test_command_runs_on_a_read_only_root_without_capabilities(image: str) -> None:
    for program in ("agent", "scheduler", "simple", "status"):
        assert "usage: externalip" in run(image, program, "--help")
