"""Typed API errors, raised once, in the gateway, for every caller.

Callers branch on the class (NotFoundError, ConflictError, ...) instead of status codes,
and never parse a response body: the body of an error may be a Kubernetes
Status, an HTML page from a proxy, truncated JSON or nothing at all, and
reading it must never be what crashes a program.
"""

from __future__ import annotations

import msgspec


class ApiError(Exception):
    """A request that did not succeed. `code` is the HTTP status, 0 when none came."""

    def __init__(self, code: int, reason: str, message: str, *, retry_after: float | None = None
                 ) -> None:
        super().__init__(f"{code} {reason}: {message}" if code else f"{reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class BadRequestError(ApiError):
    """400: the request itself is wrong (e.g. a selector the server rejects)."""


class ForbiddenError(ApiError):
    """401/403: our identity may not do this (RBAC, an admission policy)."""


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409: AlreadyExists on create, or a stale resourceVersion on update."""


class GoneError(ApiError):
    """410: the resourceVersion asked for is older than the server keeps."""


class InvalidError(ApiError):
    """422: the object fails validation (CRD schema, CEL)."""


class TooManyRequestsError(ApiError):
    """429: come back after `retry_after` seconds."""


class ServerError(ApiError):
    """5xx, or a success whose body is not the JSON promised (a broken proxy)."""


class UnreachableError(ApiError):
    """No answer: connection refused or reset, timeout, TLS failure."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequestError, 401: ForbiddenError, 403: ForbiddenError, 404: NotFoundError,
    409: ConflictError, 410: GoneError, 422: InvalidError, 429: TooManyRequestsError,
}


def _retry_after(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:  # an HTTP date: rare from the API server; treat as "soon"
        return 1.0


def from_response(code: int, body: bytes, retry_after: str | None = None) -> ApiError:
    """The typed error for an HTTP status and whatever body came with it."""
    reason, message = _describe(code, body)
    cls = _BY_CODE.get(code) or (ServerError if code >= 500 else ApiError)
    return cls(code, reason, message, retry_after=_retry_after(retry_after))


def _describe(code: int, body: bytes) -> tuple[str, str]:
    """(reason, message) from a Kubernetes Status, else a short excerpt of the body."""
    try:
        status = msgspec.json.decode(body) if body else None
    except (msgspec.DecodeError, UnicodeDecodeError):
        status = None
    if isinstance(status, dict) and (status.get("message") or status.get("reason")):
        return str(status.get("reason") or f"HTTP{code}"), str(status.get("message") or "")
    text = body[:200].decode("utf-8", "replace").strip()
    return f"HTTP{code}", " ".join(text.split()) or "(empty body)"
