"""Who may read /metrics: the API server decides (--metrics-auth).

As controller-runtime's `WithAuthenticationAndAuthorization` filter and
kube-rbac-proxy do: the bearer token is authenticated with a TokenReview,
and the user it names is authorized with a SubjectAccessReview for `get` on
the non-resource URL `/metrics`. A scraper's service account therefore
needs a ClusterRole with `nonResourceURLs: ["/metrics"], verbs: ["get"]`
(deploy/rbac/metrics-auth.yaml ships one), and our own accounts need to
create TokenReviews and SubjectAccessReviews (the built-in
`system:auth-delegator` role, bound in the same file).

Answers are cached for a short time per token (a scrape every 15 s must not
cost two API writes), and a failed review denies: an API outage makes
/metrics answer 403, it never opens it.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from externalip import log
from externalip.kube.api import Api, ApiError, Kind

_log = log.get(__name__)

TOKEN_REVIEWS = Kind("authentication.k8s.io", "v1", "tokenreviews", False)
SUBJECT_ACCESS_REVIEWS = Kind("authorization.k8s.io", "v1", "subjectaccessreviews", False)
CACHE_SECONDS = 60.0
CACHE_MAX = 256


class MetricsAuthorizer:
    """`await authorizer(token)`: may the token's user `get /metrics`?"""

    def __init__(self, api: Api, path: str = "/metrics",
                 clock: Any = time.monotonic) -> None:
        self._api, self._path, self._clock = api, path, clock
        self._cache: dict[str, tuple[float, bool]] = {}

    async def __call__(self, token: str) -> bool:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            allowed = await self._review(token)
        except (ApiError, OSError, KeyError, TypeError) as exc:
            _log.warning("cannot review a /metrics token; denying", error=str(exc))
            return False  # not cached: the next scrape asks again
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (now, allowed)
        return allowed

    async def _review(self, token: str) -> bool:
        review = await self._api.create(TOKEN_REVIEWS, {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token}})
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return False
        user = status.get("user") or {}
        access = await self._api.create(SUBJECT_ACCESS_REVIEWS, {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.get("username", ""), "uid": user.get("uid", ""),
                     "groups": user.get("groups") or [], "extra": user.get("extra") or {},
                     "nonResourceAttributes": {"path": self._path, "verb": "get"}}})
        allowed = bool((access.get("status") or {}).get("allowed"))
        if not allowed:
            _log.info("/metrics denied", user=user.get("username", ""))
        return allowed
