"""deploy/examples/restrict-external-ips.yaml: who may add spec.externalIPs.

Applied to the real API server (its own ValidatingAdmissionPolicy engine);
the policy is removed afterwards, because other tests create Services with
external IPs freely.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "restrict-external-ips.yaml"
LABEL = "externalip.io/allow-external-ips"


def service(ns: str, name: str, ips: list[str]) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": name, "namespace": ns},
                           "spec": {"ports": [{"port": 80}], "externalIPs": ips}})


def apply(cp: ControlPlane, text: str, *who: str) -> tuple[bool, str]:
    result = cp.kubectl(*who, "apply", "--server-side", "--force-conflicts", "-f", "-",
                        input=text, check=False)
    return result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def guarded(control_plane: ControlPlane) -> Iterator[tuple[ControlPlane, str, str]]:
    suffix = time.strftime("%H%M%S")
    open_ns, closed_ns = f"eipopen{suffix}", f"eipclosed{suffix}"
    for ns in (open_ns, closed_ns):
        control_plane.ensure_namespace(ns)
    control_plane.kubectl("label", "namespace", open_ns, f"{LABEL}=true")
    # a Service that had an address before the policy existed
    control_plane.apply(service(closed_ns, "old", ["198.19.1.1", "198.19.1.2"]))
    control_plane.apply(POLICY)
    try:
        deadline = time.monotonic() + 30
        while apply(control_plane, service(closed_ns, "probe", ["198.19.1.9"]))[0]:
            control_plane.kubectl("delete", "service", "probe", "-n", closed_ns)
            assert time.monotonic() < deadline, "the policy never took effect"
            time.sleep(0.2)
        yield control_plane, open_ns, closed_ns
    finally:
        control_plane.kubectl("delete", "-f", str(POLICY), "--ignore-not-found")
        # Services with external IPs would get claims from any scheduler run later
        for ns in (open_ns, closed_ns):
            control_plane.kubectl("delete", "services", "--all", "-n", ns, "--wait=false")


def test_adding_external_ips_needs_a_labelled_namespace(
        guarded: tuple[ControlPlane, str, str]) -> None:
    cp, open_ns, closed_ns = guarded
    ok, err = apply(cp, service(closed_ns, "web", ["198.19.1.10"]))
    assert not ok and "198.19.1.10 not allowed" in err
    ok, err = apply(cp, service(open_ns, "web", ["198.19.1.10"]))
    assert ok, err
    ok, err = apply(cp, service(closed_ns, "old", ["198.19.1.1", "198.19.1.3"]))
    assert not ok and "198.19.1.3" in err


def test_removing_external_ips_is_always_allowed(guarded: tuple[ControlPlane, str, str]) -> None:
    cp, _, closed_ns = guarded
    ok, err = apply(cp, service(closed_ns, "old", ["198.19.1.1"]))
    assert ok, err


def test_the_scheduler_may_write_allocated_addresses(
        guarded: tuple[ControlPlane, str, str]) -> None:
    cp, _, closed_ns = guarded
    # the user creates the Service; the scheduler adds the address it allocated
    # (external-ip=auto), as it does in production: a patch of spec.externalIPs
    ok, err = apply(cp, service(closed_ns, "allocated", []))
    assert ok, err
    # system:masters only gets past RBAC for this patch; the policy sees the user name
    result = cp.kubectl("--as=system:serviceaccount:externalip:externalip-scheduler",
                        "--as-group=system:masters", "patch", "service", "allocated",
                        "-n", closed_ns, "--type=merge",
                        "-p", '{"spec": {"externalIPs": ["198.19.1.20"]}}', check=False)
    assert result.returncode == 0, result.stderr
