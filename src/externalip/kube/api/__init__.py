"""The one gateway to the API server (gateway.Api), its typed errors and the
resources it knows. Nothing outside kube/ speaks HTTP to the API server."""

from externalip.kube.api.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServerError,
    TooManyRequests,
    Unreachable,
)
from externalip.kube.api.gateway import FIELD_MANAGER, Api, Cache, Object, remember
from externalip.kube.api.kinds import (
    CLAIMS,
    ENDPOINT_SLICES,
    EVENTS,
    IPNODES,
    LEASES,
    NODES,
    POOLS,
    SERVICES,
    Kind,
)

__all__ = [
    "CLAIMS", "ENDPOINT_SLICES", "EVENTS", "FIELD_MANAGER", "IPNODES", "LEASES", "NODES",
    "POOLS", "SERVICES", "Api", "ApiError", "BadRequest", "Cache", "Conflict", "Forbidden",
    "Gone", "Invalid", "Kind", "NotFound", "Object", "ServerError", "TooManyRequests",
    "Unreachable", "remember",
]
