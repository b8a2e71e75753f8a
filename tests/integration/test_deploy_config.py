"""The shipped manifests configure the programs with flags and env vars that exist.

Pure checks (no API server): every EXTERNALIP_* variable a manifest sets must
be a flag of the program that container runs, and the container's arguments
with that environment must parse, so a renamed flag or a typo in a duration
breaks the build here rather than a pod in a crash loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from externalip import cli, settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = [DEPLOY / "claims" / "agent.yaml", DEPLOY / "claims" / "scheduler.yaml",
             DEPLOY / "simple" / "simple.yaml"]
BY_ENV = {f.env: f for f in settings.FLAGS}


def containers(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] in {"DaemonSet", "Deployment"}:
            yield from doc["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_env_var_is_a_flag_of_the_program_and_parses(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = list(containers(path))
    assert found, f"no containers in {path}"
    for container in found:
        program = container["args"][0]
        assert program in settings.ALL
        for env in container.get("env", []):
            flag = BY_ENV.get(env["name"])
            assert flag is not None, f"{path.name}: {env['name']} is not a flag"
            assert program in flag.programs, f"{path.name}: {flag.name} is not a {program} flag"
            # downward API values are filled in by the kubelet; stand in a name
            monkeypatch.setenv(env["name"], env.get("value", "node-a"))
        opts = cli.build_parser().parse_args(container["args"])
        assert opts.program == program


def test_agent_and_simple_manifests_set_the_interface_explicitly() -> None:
    """eth0 is rarely the right interface on today's hosts (predictable names);
    the manifests must make it visible where to change it."""
    for path in (DEPLOY / "claims" / "agent.yaml", DEPLOY / "simple" / "simple.yaml"):
        (container,) = containers(path)
        assert "EXTERNALIP_IFACE" in {e["name"] for e in container["env"]}
