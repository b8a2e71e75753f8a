"""The verbs a user runs on a lab that is up (`externalip lab fault|pod ...`),
executed by the lab's own process when they arrive over its control socket.

    fault node-down NODE    link down, every program on the node killed, API cut
    fault node-up NODE      undo any fault of NODE
    fault agent-kill NODE   SIGKILL the node's agent (it stays dead until node-up)
    fault api-cut NODE      stop the node's API proxy (its data plane stays up)
    fault api-slow NODE     the node's API proxy delays every answer by 2 s
    fault api-chaos NODE    the node's API proxy answers 30% of requests with a fault:
                            HTML 502, 500, 429 + Retry-After, truncated JSON, a reset
                            connection or 2 s of latency (externalip_lab.apichaos)
    fault leader-kill       SIGKILL the scheduler holding the leader Lease
    pod ready|unready POD   flip a lab pod's Ready condition
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from externalip_lab.apichaos import Chaos, ChaosServer

if TYPE_CHECKING:
    from externalip_lab.lab import Lab

SLOW_API_SECONDS = 2.0
LEASE = "externalip-scheduler"
NODE_FAULTS = ("node-down", "node-up", "agent-kill", "api-cut", "api-slow", "api-chaos")
FAULTS = (*NODE_FAULTS, "leader-kill")


def leader_index(lab: Lab) -> int:
    """The lab's scheduler holding the Lease (its identity ends with its PID)."""
    assert lab.cp is not None
    lease = json.loads(lab.cp.kubectl("get", "lease", LEASE, "-n", "externalip",
                                      "-o", "json").stdout)
    holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
    for index in range(1, lab.schedulers + 1):
        proc = lab.procs.get(f"scheduler-{index}")
        if proc is not None and holder.endswith(f"-{proc.popen.pid}"):
            return index
    raise LookupError(f"the Lease is held by {holder or 'nobody'}, no running scheduler of "
                      "this lab")


def fault(lab: Lab, verb: str, node: str = "") -> str:
    if verb == "leader-kill":
        index = leader_index(lab)
        lab.kill_scheduler(index)
        return f"killed scheduler-{index}, the leader"
    if verb not in NODE_FAULTS:
        raise ValueError(f"unknown fault {verb!r}: one of {', '.join(FAULTS)}")
    if node not in lab.node_names:
        raise ValueError(f"{verb} needs a node: one of {', '.join(lab.node_names)}")
    if verb == "node-down":
        lab.kill_node(node)
    elif verb == "node-up":
        lab.restore_node(node)
    elif verb == "agent-kill":
        lab.kill_agent(node)
    elif verb == "api-cut":
        lab.partition(node)
    elif verb == "api-chaos":
        api_chaos(lab, node, Chaos())
    else:
        lab.heal(node)
        lab.proxies[node].latency = SLOW_API_SECONDS
    return f"{verb} {node}: done"


def api_chaos(lab: Lab, node: str, chaos: Chaos) -> None:
    """Put the node's API path in fault mode (node-up ends it)."""
    assert lab.cp is not None and lab.cp.certs is not None
    lab.heal(node)
    certs = lab.cp.certs
    lab.proxies[node].chaos = ChaosServer(chaos, certs.serving_cert, certs.serving_key,
                                          certs.ca_cert, lab.cp.apiserver_port)


def handle(lab: Lab, words: list[str]) -> str:
    """One request from the control socket: ["fault", VERB, NODE?] or ["pod", STATE, POD]."""
    match words:
        case ["fault", verb, *rest]:
            return fault(lab, verb, *rest[:1])
        case ["pod", ("ready" | "unready") as state, name]:
            pod = lab.set_pod_ready(name, state == "ready")
            return f"pod {pod.namespace}/{pod.name} on {pod.node}: {state}"
    raise ValueError(f"unknown request {' '.join(words)!r}")
