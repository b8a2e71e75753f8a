"""A client asking every Service in turn, all the time, as users would: what
it lost, through which nodes the answers came, and the longest gap it saw.
The rolling-upgrade test and bench/image_upgrade.py share it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from externalip_lab.client import ClientView


@dataclass
class Poller:
    client: ClientView
    ips: list[str]
    lost: list[tuple[float, str]] = field(default_factory=list)
    nodes: dict[str, set[str]] = field(default_factory=dict)
    longest_gap: float = 0.0  # between two answers of one Service (the others asked meanwhile)
    slowest: float = 0.0  # the longest single answered request
    requests: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-poller", daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = {ip: time.monotonic() for ip in self.ips}
        while not self._stop.is_set():
            for ip in self.ips:
                asked = time.monotonic()
                answer = self.client.client_answer(ip, timeout=1.0)
                now = time.monotonic()
                self.requests += 1
                if answer is None:
                    self.lost.append((now, ip))
                    continue
                self.nodes.setdefault(ip, set()).add(answer.via)
                self.longest_gap = max(self.longest_gap, now - last[ip])
                self.slowest = max(self.slowest, now - asked)
                last[ip] = now
            time.sleep(0.05)

    def report(self) -> str:
        return (f"{self.requests} requests to {len(self.ips)} Services, {len(self.lost)} lost, "
                f"longest gap between two answers of one Service {self.longest_gap:.2f}s, "
                f"slowest request {self.slowest:.2f}s, "
                f"addresses that changed node: {sum(len(n) > 1 for n in self.nodes.values())}")
