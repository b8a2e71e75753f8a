"""Small lifecycle helpers shared by the control plane, the lab and its parts."""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Self


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 wait: float = 10.0) -> None:
    """Signal a process we started and reap it, killing it if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class StartStop:
    """`with X() as x:` runs start(), and stop() on exit or on a failed start
    (stop() must therefore cope with a half-started object)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
