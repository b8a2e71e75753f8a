"""Timestamps in the forms the API uses."""

from __future__ import annotations

import datetime


def now_rfc3339() -> str:
    """metav1.Time: seconds precision, UTC."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """metav1.MicroTime (Lease renewTime/acquireTime): microseconds, UTC."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
