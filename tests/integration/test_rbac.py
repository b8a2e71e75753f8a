"""Least privilege, proven against the real API server's RBAC authorizer.

deploy/ (and the simple-mode RBAC) is applied, then `kubectl auth can-i
--as=system:serviceaccount:externalip:<account>` asks the server, for each
account, both what its program needs and what it must never be able to do.
A role that grows a permission by accident, or loses one its program uses,
fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# simple mode's RBAC, applied on its own (not in the default kustomization)
SIMPLE_RBAC = DEPLOY / "rbac" / "simple.yaml"
NS = "externalip"
AGENT, SCHEDULER, SIMPLE = "externalip-agent", "externalip-scheduler", "externalip-simple"
CLAIMS, POOLS, NODES_CR = ("ipclaims.ipcontroller.ext", "ipclaimpools.ipcontroller.ext",
                           "ipnodes.ipcontroller.ext")
LEASES, SLICES = "leases.coordination.k8s.io", "endpointslices.discovery.k8s.io"
ALL_NS = "*"  # the permission in every namespace (a ClusterRoleBinding)

# (account, verb, resource, subresource, namespace); namespace None = cluster-scoped kind
Check = tuple[str, str, str, str, str | None]

NEEDED: list[Check] = [
    # agent: its claims (by label selector), their status, its IpNode, its Lease, Events
    (AGENT, "list", CLAIMS, "", None),
    (AGENT, "watch", CLAIMS, "", None),
    (AGENT, "patch", CLAIMS, "status", None),
    (AGENT, "get", NODES_CR, "", None),
    (AGENT, "create", NODES_CR, "", None),
    (AGENT, "patch", NODES_CR, "status", None),
    (AGENT, "get", LEASES, "", NS),
    (AGENT, "create", LEASES, "", NS),
    (AGENT, "update", LEASES, "", NS),
    (AGENT, "create", "events", "", ALL_NS),
    (AGENT, "patch", "events", "", ALL_NS),  # repeats fold into a count
    # scheduler: reads the cluster, writes claims, pool status, Service status, Events
    (SCHEDULER, "list", "services", "", ALL_NS),
    (SCHEDULER, "watch", "services", "", ALL_NS),
    (SCHEDULER, "patch", "services", "status", ALL_NS),
    (SCHEDULER, "patch", "services", "", ALL_NS),  # spec.externalIPs for external-ip=auto
    (SCHEDULER, "list", "nodes", "", None),
    (SCHEDULER, "watch", "nodes", "", None),
    (SCHEDULER, "list", SLICES, "", ALL_NS),
    (SCHEDULER, "watch", SLICES, "", ALL_NS),
    (SCHEDULER, "list", LEASES, "", NS),
    (SCHEDULER, "watch", LEASES, "", NS),
    (SCHEDULER, "create", LEASES, "", NS),
    (SCHEDULER, "update", LEASES, "", NS),
    (SCHEDULER, "create", CLAIMS, "", None),
    (SCHEDULER, "update", CLAIMS, "", None),
    (SCHEDULER, "delete", CLAIMS, "", None),
    (SCHEDULER, "list", POOLS, "", None),
    (SCHEDULER, "watch", POOLS, "", None),
    (SCHEDULER, "patch", POOLS, "status", None),
    (SCHEDULER, "patch", NODES_CR, "status", None),  # conditions: IpNode Healthy,
    (SCHEDULER, "patch", CLAIMS, "status", None),  # IpClaim Scheduled=False
    (SCHEDULER, "list", NODES_CR, "", None),  # the peers each agent hears (backstop)
    (SCHEDULER, "watch", NODES_CR, "", None),
    (SCHEDULER, "patch", NODES_CR, "", None),  # spec.draining mirrors the drain label
    (SCHEDULER, "create", "events", "", ALL_NS),
    (SCHEDULER, "patch", "events", "", ALL_NS),
    # simple mode: reads Services
    (SIMPLE, "list", "services", "", ALL_NS),
    (SIMPLE, "watch", "services", "", ALL_NS),
    (SIMPLE, "create", "events", "", ALL_NS),  # AddressRefused on the Service
]

FORBIDDEN: list[Check] = [
    # nobody reads Secrets, anywhere
    *[(sa, verb, "secrets", "", ns)
      for sa in (AGENT, SCHEDULER, SIMPLE)
      for verb in ("get", "list", "watch")
      for ns in (ALL_NS, NS, "kube-system", "default")],
    # nobody runs workloads or changes RBAC
    *[(sa, verb, resource, "", ALL_NS)
      for sa in (AGENT, SCHEDULER, SIMPLE)
      for verb, resource in (("create", "pods"), ("create", "pods/exec"),
                             ("create", "roles.rbac.authorization.k8s.io"),
                             ("create", "rolebindings.rbac.authorization.k8s.io"))],
    *[(sa, "create", "serviceaccounts", "token", NS) for sa in (AGENT, SCHEDULER, SIMPLE)],
    # the agent may not touch Services, pools, claims' spec, or Leases outside its namespace
    *[(AGENT, verb, "services", sub, ALL_NS)
      for verb in ("create", "update", "patch", "delete") for sub in ("", "status")],
    *[(AGENT, verb, POOLS, sub, None)
      for verb in ("create", "update", "patch", "delete") for sub in ("", "status")],
    *[(AGENT, verb, CLAIMS, "", None) for verb in ("create", "update", "patch", "delete")],
    (AGENT, "delete", NODES_CR, "", None),
    *[(AGENT, verb, LEASES, "", ns)
      for verb in ("create", "update", "delete")
      for ns in ("kube-node-lease", "kube-system", "default", ALL_NS)],
    (AGENT, "delete", LEASES, "", NS),
    *[(AGENT, verb, "nodes", "", None) for verb in ("update", "patch", "delete")],
    # the scheduler may not delete or change Nodes, pools' spec, IpNodes (but for
    # patching spec.draining), or others' Leases
    *[(SCHEDULER, verb, "nodes", "", None) for verb in ("delete", "update", "patch", "create")],
    *[(SCHEDULER, verb, POOLS, "", None) for verb in ("create", "update", "patch", "delete")],
    # (it patches an IpNode's spec for the drain mirror, its status for the
    # Healthy condition)
    *[(SCHEDULER, verb, NODES_CR, sub, None)
      for verb in ("create", "update", "patch", "delete") for sub in ("", "status")
      if verb != "patch"],
    (SCHEDULER, "delete", "services", "", ALL_NS),
    (SCHEDULER, "create", "services", "", ALL_NS),
    *[(SCHEDULER, verb, LEASES, "", ns)
      for verb in ("create", "update", "delete") for ns in ("kube-node-lease", "kube-system")],
    (SCHEDULER, "update", "endpointslices.discovery.k8s.io", "", ALL_NS),
    # simple mode only reads Services: it writes nothing of ours and no Service
    *[(SIMPLE, verb, "services", sub, ALL_NS)
      for verb in ("create", "update", "patch", "delete") for sub in ("", "status")],
    *[(SIMPLE, verb, res, "", None)
      for verb in ("create", "update", "delete") for res in (CLAIMS, POOLS, NODES_CR)],
    (SIMPLE, "list", "nodes", "", None),
]


def check_id(check: Check) -> str:
    sa, verb, resource, sub, ns = check
    where = "cluster" if ns is None else ("all-ns" if ns == ALL_NS else ns)
    return f"{sa.removeprefix('externalip-')}-{verb}-{resource.split('.')[0]}" + (
        f"/{sub}" if sub else "") + f"-{where}"


@pytest.fixture(scope="module")
def rbac(control_plane: ControlPlane) -> ControlPlane:
    control_plane.apply(DEPLOY)
    control_plane.kubectl("apply", "--server-side", "-f", str(SIMPLE_RBAC),
                          "-f", str(DEPLOY / "simple"))
    return control_plane


def can_i(cp: ControlPlane, check: Check) -> bool:
    sa, verb, resource, sub, ns = check
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{NS}:{sa}"]
    if sub:
        args.append(f"--subresource={sub}")
    if ns == ALL_NS:
        args.append("--all-namespaces")
    elif ns is not None:
        args += ["-n", ns]
    result = cp.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl auth can-i said {answer!r}: {result.stderr}"
    return answer == "yes"


@pytest.mark.parametrize("check", NEEDED, ids=check_id)
def test_account_may_do_what_its_program_needs(rbac: ControlPlane, check: Check) -> None:
    assert can_i(rbac, check), f"{check} is needed but denied"


@pytest.mark.parametrize("check", FORBIDDEN, ids=check_id)
def test_account_may_not_do_this(rbac: ControlPlane, check: Check) -> None:
    assert not can_i(rbac, check), f"{check} must be denied but is allowed"


def test_known_limit_agent_can_write_any_lease_in_its_namespace(rbac: ControlPlane) -> None:
    """RBAC names objects statically (resourceNames), so one role cannot say
    "only the Lease named after your own node"; every agent may update every
    Lease in the externalip namespace, including other nodes' and the
    scheduler's leader Lease. docs/security.md says so; if this ever fails,
    the restriction got better: update the docs."""
    assert can_i(rbac, (AGENT, "update", LEASES, "", NS))


def test_a_real_token_gets_the_same_answers(rbac: ControlPlane, tmp_path: Path) -> None:
    """Impersonation above, a TokenRequest token here: the pods' real identity."""
    kubeconfig = rbac.service_account_kubeconfig(NS, AGENT)
    ok = rbac.kubectl("get", "ipclaims", kubeconfig=kubeconfig, check=False)
    assert ok.returncode == 0, ok.stderr
    denied = rbac.kubectl("get", "secrets", "-n", NS, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    denied = rbac.kubectl("get", "services", "-A", kubeconfig=kubeconfig, check=False)
    assert "forbidden" in denied.stderr.lower()
