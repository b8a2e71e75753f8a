"""What the scheduler tells a Service: one Warning per pass, not one per problem. Pure.

A Service with several bad fields (two refused external IPs, a zoned
request and a long sharing key) would otherwise collect one Event per
problem per change; the user reads one Warning listing them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from externalip.core.desired import WARNING, Event

SEVERAL = "AddressProblems"


def fold_warnings(events: Iterable[Event]) -> list[Event]:
    """Normal Events unchanged; each Service's Warnings folded into one.

    The folded Event keeps the reason when all share it, else says SEVERAL;
    its message lists every distinct message once, in the order found.
    """
    out: list[Event] = []
    warnings: dict[str, list[Event]] = {}
    for event in events:
        if event.type == WARNING and event.service:
            warnings.setdefault(event.service, []).append(event)
        else:
            out.append(event)
    for service, found in warnings.items():
        reasons = {e.reason for e in found}
        messages = list(dict.fromkeys(e.message for e in found))
        out.append(Event(service, WARNING, found[0].reason if len(reasons) == 1 else SEVERAL,
                         "; ".join(messages)))
    return out
