"""Verbs for a lab that is up, sent from another process: `externalip lab
fault ...` and `externalip lab pod ...` talk to the lab's own process over a
Unix socket in its state directory, because only that process holds the API
proxies, the programs' handles and the pods' records.

One request per connection: a JSON line {"verb": [...words]}; the answer is a
JSON line {"ok": bool, "message": str}.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[list[str]], str]


class ControlServer:
    def __init__(self, path: Path, handle: Handler) -> None:
        self.path, self.handle = path, handle
        self._sock: socket.socket | None = None

    def start(self) -> ControlServer:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(8)
        threading.Thread(target=self._serve, daemon=True, name="lab-control").start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None

    def _serve(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rw") as stream:
                try:
                    words = json.loads(stream.readline())["verb"]
                    reply = {"ok": True, "message": self.handle([str(w) for w in words])}
                except Exception as exc:  # handed back to the caller, the lab stays up
                    reply = {"ok": False, "message": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(reply) + "\n")
                stream.flush()


def send(path: Path, words: list[str], timeout: float = 120.0) -> tuple[bool, str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with sock.makefile("rw") as stream:
            stream.write(json.dumps({"verb": words}) + "\n")
            stream.flush()
            reply = json.loads(stream.readline())
    return bool(reply["ok"]), str(reply["message"])
