"""The lab's kubelet (externalip_lab.kubelet): a pod spec becomes the
`podman run` a kubelet's choices amount to, and what it cannot honour is
refused by name rather than ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from externalip_lab.kubelet import (
    LabPodError,
    Pod,
    expand,
    record,
    revision,
    run_argv,
    write_files,
)


def agent_pod(**container: Any) -> Pod:
    c = {"name": "agent", "image": "localhost/externalip:1", "args": ["agent"],
         "env": [{"name": "EXTERNALIP_HOSTNAME", "valueFrom": {"fieldRef": {
             "fieldPath": "spec.nodeName"}}}, {"name": "EXTERNALIP_IFACE", "value": "eth0"}],
         "ports": [{"name": "metrics", "containerPort": 9440}],
         "resources": {"limits": {"memory": "192Mi"}},
         "securityContext": {"runAsUser": 0, "readOnlyRootFilesystem": True,
                             "allowPrivilegeEscalation": False,
                             "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}}
    c.update(container)
    template = {"spec": {"hostNetwork": True, "containers": [c],
                         "terminationGracePeriodSeconds": 10}}
    return Pod("agent-node1", "node1", "lab-node1", "192.0.2.11", "externalip", template,
               revision(template))


def test_the_agent_spec_becomes_its_podman_run() -> None:
    argv = run_argv(agent_pod(), "lab-agent-node1", "lab", {}, 6443)
    assert argv[:3] == ["podman", "run", "--rm"]
    for flag in ("--network=ns:/run/netns/lab-node1", "--hostname=node1", "--user=0",
                 "--read-only", "--read-only-tmpfs=false", "--cap-drop=all",
                 "--cap-add=net_admin", "--cap-add=net_raw",
                 "--security-opt=no-new-privileges", "--stop-timeout=10",
                 f"--memory={192 * 1024 * 1024}", "--env=EXTERNALIP_HOSTNAME=node1",
                 "--env=EXTERNALIP_IFACE=eth0", "--env=KUBERNETES_SERVICE_PORT=6443"):
        assert flag in argv, flag
    assert argv[-2:] == ["localhost/externalip:1", "agent"]


@pytest.mark.parametrize("change", [
    {"securityContext": {"runAsNonRoot": True, "runAsUser": 0}},
    {"securityContext": {"procMount": "Unmasked"}},
    {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
])
def test_what_the_lab_cannot_honour_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(LabPodError):
        run_argv(agent_pod(**change), "c", "lab", {}, 6443)


def test_only_secret_volumes_are_mounted(tmp_path: Path) -> None:
    pod = agent_pod(volumeMounts=[{"name": "keys", "mountPath": "/keys"}])
    pod.template["spec"]["volumes"] = [{"name": "keys", "secret": {
        "secretName": "k", "defaultMode": 0o400}}]
    mounts = write_files(pod, tmp_path, "tok", b"ca", {"k": {"1": b"key"}})
    assert (mounts["/keys"] / "1").read_bytes() == b"key"
    assert (mounts["/keys"] / "1").stat().st_mode & 0o777 == 0o400
    token = mounts["/var/run/secrets/kubernetes.io/serviceaccount"] / "token"
    assert token.read_text() == "tok"
    pod.template["spec"]["volumes"] = [{"name": "keys", "hostPath": {"path": "/"}}]
    with pytest.raises(LabPodError):
        write_files(pod, tmp_path, "tok", b"ca", {})


def test_readiness_follows_the_probes_and_liveness_fails_at_its_threshold() -> None:
    pod, spec = agent_pod(), {"failureThreshold": 2}
    assert not record(pod, "readiness", spec, True) and pod.ready
    assert not record(pod, "readiness", spec, False) and pod.ready
    assert record(pod, "readiness", spec, False) and not pod.ready
    assert not record(pod, "liveness", spec, False)
    assert record(pod, "liveness", spec, False)


def test_env_references_expand_as_kubernetes_does() -> None:
    pod = agent_pod(env=[
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "EXTERNALIP_HEALTH_ADDR", "value": "$(POD_IP):9441"}],
        args=["agent", "--x=$(POD_IP)", "$$(POD_IP)"])
    argv = run_argv(pod, "c", "lab", {}, 6443)
    assert "--env=EXTERNALIP_HEALTH_ADDR=192.0.2.11:9441" in argv
    assert argv[-2:] == ["--x=192.0.2.11", "$(POD_IP)"]
    assert expand("$(LATER) $$", {}) == "$(LATER) $"
