"""podman as the lab uses it: the settings that work on these machines
(tools/image/containers.conf: runc, cgroupfs, no default ulimits), the image
`make image` builds, containers labelled with the lab's prefix so `lab down`
finds them, and the capabilities a running container really has."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

from externalip_lab.controlplane.binaries import REPO_ROOT

CONF = REPO_ROOT / "tools" / "image" / "containers.conf"
BUILD = REPO_ROOT / "tools" / "image" / "build.sh"
LABEL = "externalip.lab"

# capability numbers of linux/capability.h, for reading /proc/<pid>/status
CAPABILITIES = (  # noqa: SIM905 - one line per row of the header reads better
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE").split()


class PodmanError(RuntimeError):
    pass


def environ() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONF)}


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=environ(),
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise PodmanError(f"podman {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def build_image() -> str:
    """`make image` (seconds when nothing changed); the image's name."""
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PodmanError(f"building the image failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def tag(image: str, new: str) -> None:
    podman("tag", image, new)


def remove_containers(prefix: str, name: str = "") -> None:
    """Every container of one lab (or the one named), running or not (`lab
    down`, a killed owner, a name to reuse)."""
    filters = ["--filter", f"label={LABEL}={prefix}"]
    if name:
        filters += ["--filter", f"name=^{name}$"]
    ids = podman("ps", "-aq", *filters, check=False).stdout.split()
    if ids:
        podman("rm", "--force", "--time", "0", *ids, check=False)


def pid(container: str) -> int:
    return int(podman("inspect", "--format", "{{.State.Pid}}", container).stdout.strip())


def effective_capabilities(container: str) -> set[str]:
    """The capabilities the container's main process holds, from the kernel's view."""
    with open(f"/proc/{pid(container)}/status") as status:
        line = next(x for x in status if x.startswith("CapEff:"))
    mask = int(line.split()[1], 16)
    return {name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1}


class ContainerPopen(subprocess.Popen[bytes]):
    """`podman run` in the foreground: the process lives exactly as long as the
    container, and a signal goes to the container's main process (what a
    kubelet's stop or kill does), never only to the podman client."""

    def __init__(self, container: str, argv: list[str], **kwargs: Any) -> None:
        self.container = container
        super().__init__(argv, env=environ(), **kwargs)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            podman("kill", "--signal", signal.Signals(sig).name, self.container, check=False)
