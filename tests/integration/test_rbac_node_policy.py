"""The admission policy that ties an agent to its own node (deploy/admission/).

Requests are made as the agent's service account carrying the node name its
pod-bound token would carry (impersonated with --as-user-extra), against the
real API server, where the ValidatingAdmissionPolicy runs after RBAC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NS = "externalip"
AGENT = f"system:serviceaccount:{NS}:externalip-agent"
NODE_EXTRA = "authentication.kubernetes.io/node-name"


def as_agent(cp: ControlPlane, node: str | None, *args: str,
             input: str | None = None) -> tuple[bool, str]:
    who = [f"--as={AGENT}", "--as-group=system:serviceaccounts",
           f"--as-group=system:serviceaccounts:{NS}"]
    if node is not None:
        who.append(f"--as-user-extra={NODE_EXTRA}={node}")
    result = cp.kubectl(*who, *args, input=input, check=False)
    return result.returncode == 0, result.stderr


def lease(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": name, "namespace": NS},
                           "spec": {"holderIdentity": name, "leaseDurationSeconds": 6}})


@pytest.fixture(scope="module")
def policy(crds: ControlPlane, unique: str) -> Iterator[ControlPlane]:
    crds.apply(DEPLOY)
    # policies are loaded asynchronously: wait until a foreign Lease is refused
    deadline = time.monotonic() + 30
    while as_agent(crds, f"{unique}-probe", "create", "-f", "-",
                   input=lease(f"{unique}-other"))[0]:
        crds.kubectl("delete", "lease", f"{unique}-other", "-n", NS)
        assert time.monotonic() < deadline, "the admission policy never took effect"
        time.sleep(0.2)
    yield crds
    # claims and IpNodes are cluster-scoped: leave none for later tests
    crds.kubectl("delete", "ipclaims", f"{unique}-c1", f"{unique}-c2", "--ignore-not-found")
    crds.kubectl("delete", "ipnodes", f"{unique}-a", f"{unique}-b", "--ignore-not-found")
    crds.kubectl("delete", "leases", "-n", NS, f"{unique}-a", f"{unique}-leader",
                 f"{unique}-free", "--ignore-not-found")


@pytest.fixture(scope="module")
def unique() -> str:
    return "pol" + time.strftime("%H%M%S")


def test_agent_writes_its_own_lease_but_not_another_nodes(policy: ControlPlane,
                                                          unique: str) -> None:
    mine, other = f"{unique}-a", f"{unique}-b"
    ok, err = as_agent(policy, mine, "create", "-f", "-", input=lease(mine))
    assert ok, err
    ok, err = as_agent(policy, mine, "create", "-f", "-", input=lease(other))
    assert not ok
    assert f"may only write the Lease named {mine}" in err
    # nor the scheduler's leader Lease
    policy.apply(lease(f"{unique}-leader"))
    ok, _ = as_agent(policy, mine, "annotate", "lease", f"{unique}-leader", "-n", NS, "x=y")
    assert not ok


def test_agent_writes_its_own_ipnode_only(policy: ControlPlane, unique: str) -> None:
    def ipnode(name: str) -> str:
        return yaml.safe_dump({"apiVersion": "ipcontroller.ext/v1", "kind": "IpNode",
                               "metadata": {"name": name}})
    ok, err = as_agent(policy, f"{unique}-a", "create", "-f", "-", input=ipnode(f"{unique}-a"))
    assert ok, err
    ok, err = as_agent(policy, f"{unique}-a", "create", "-f", "-", input=ipnode(f"{unique}-b"))
    assert not ok and "IpNode" in err


def test_agent_writes_status_only_of_claims_assigned_to_it(policy: ControlPlane,
                                                           unique: str) -> None:
    for suffix, node in (("1", f"{unique}-a"), ("2", f"{unique}-b")):
        policy.apply(yaml.safe_dump({
            "apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
            "metadata": {"name": f"{unique}-c{suffix}"},
            "spec": {"cidr": f"198.19.0.{suffix}/32", "nodeName": node}}))

    def mark_ready(claim: str) -> tuple[bool, str]:
        # a raw PUT of the status, as the agent does it: needs only `update`
        obj = json.loads(policy.kubectl("get", "ipclaim", claim, "-o", "json").stdout)
        obj["status"] = {"ready": True, "holder": f"{unique}-a"}
        return as_agent(policy, f"{unique}-a", "replace", "--raw",
                        f"/apis/ipcontroller.ext/v1/ipclaims/{claim}/status", "-f", "-",
                        input=json.dumps(obj))

    ok, err = mark_ready(f"{unique}-c1")
    assert ok, err
    ok, err = mark_ready(f"{unique}-c2")
    assert not ok and "claims assigned to it" in err


def test_a_standby_may_take_over_and_nobody_else(policy: ControlPlane, unique: str) -> None:
    """A standby names itself holder, taken from the assigned node; a node that is
    no standby of the claim may not, nor may a standby hide where it took it from."""
    claim = f"{unique}-c4"
    policy.apply(yaml.safe_dump({
        "apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim", "metadata": {"name": claim},
        "spec": {"cidr": "198.19.0.4/32", "nodeName": f"{unique}-a",
                 "standbys": [f"{unique}-b"]}}))

    def take(node: str, taken_from: str) -> tuple[bool, str]:
        obj = json.loads(policy.kubectl("get", "ipclaim", claim, "-o", "json").stdout)
        obj["status"] = {"ready": True, "holder": node, "term": 1, "takenFrom": taken_from}
        return as_agent(policy, node, "replace", "--raw",
                        f"/apis/ipcontroller.ext/v1/ipclaims/{claim}/status", "-f", "-",
                        input=json.dumps(obj))
    try:
        ok, err = take(f"{unique}-c", f"{unique}-a")
        assert not ok and "take over one it stands by for" in err
        ok, err = take(f"{unique}-b", "")
        assert not ok, "a takeover must say where it took the address from"
        ok, err = take(f"{unique}-b", f"{unique}-a")
        assert ok, err
    finally:
        policy.kubectl("delete", "ipclaim", claim, "--ignore-not-found")


def test_tokens_without_a_node_are_not_restricted(policy: ControlPlane, unique: str) -> None:
    """What the lab's hand-minted tokens are: RBAC alone applies (docs/security.md)."""
    ok, err = as_agent(policy, None, "create", "-f", "-", input=lease(f"{unique}-free"))
    assert ok, err


def test_a_previous_holder_may_only_clear_a_claim_that_moved_away(policy: ControlPlane,
                                                                  unique: str) -> None:
    """Issue 12, item 13: node a held claim c3, which moved to b; a may clear its
    status but not mark it ready or itself its holder."""
    claim = f"{unique}-c3"
    policy.apply(yaml.safe_dump({
        "apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim", "metadata": {"name": claim},
        "spec": {"cidr": "198.19.0.3/32", "nodeName": f"{unique}-a"}}))

    def write_status(status: dict[str, object]) -> tuple[bool, str]:
        obj = json.loads(policy.kubectl("get", "ipclaim", claim, "-o", "json").stdout)
        obj["status"] = status
        return as_agent(policy, f"{unique}-a", "replace", "--raw",
                        f"/apis/ipcontroller.ext/v1/ipclaims/{claim}/status", "-f", "-",
                        input=json.dumps(obj))
    try:
        ok, err = write_status({"ready": True, "holder": f"{unique}-a"})
        assert ok, err
        policy.kubectl("patch", "ipclaim", claim, "--type=merge", "-p",
                       json.dumps({"spec": {"nodeName": f"{unique}-b"}}))
        ok, err = write_status({"ready": True, "holder": f"{unique}-a"})
        assert not ok and "only clear it" in err
        ok, err = write_status({"ready": False, "holder": f"{unique}-a"})
        assert not ok and "only clear it" in err
        ok, err = write_status({"ready": False, "message": "released"})
        assert ok, err
    finally:
        policy.kubectl("delete", "ipclaim", claim, "--ignore-not-found")


def test_an_agent_lease_may_not_last_forever(policy: ControlPlane, unique: str) -> None:
    """Issue 12, item 13: leaseDurationSeconds 2^31-1 would keep a node alive forever."""
    name = f"{unique}-long"
    forever = yaml.safe_dump({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                              "metadata": {"name": name, "namespace": NS},
                              "spec": {"holderIdentity": name,
                                       "leaseDurationSeconds": 2**31 - 1}})
    ok, err = as_agent(policy, name, "create", "-f", "-", input=forever)
    assert not ok and "at most 60 seconds" in err
    try:
        ok, err = as_agent(policy, name, "create", "-f", "-", input=lease(name))
        assert ok, err
        obj = json.loads(policy.kubectl("get", "lease", name, "-n", NS, "-o", "json").stdout)
        obj["spec"]["leaseDurationSeconds"] = 3600
        ok, err = as_agent(policy, name, "replace", "-f", "-", input=json.dumps(obj))
        assert not ok and "at most 60 seconds" in err
    finally:
        policy.kubectl("delete", "lease", name, "-n", NS, "--ignore-not-found")
