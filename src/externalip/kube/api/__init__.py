"""The one gateway to the API server (gateway.Api), its typed errors and the
resources it knows. Nothing outside kube/ speaks HTTP to the API server."""

from externalip.kube.api.errors import (
    ApiError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    UnreachableError,
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
    "POOLS", "SERVICES", "Api", "ApiError", "BadRequestError", "Cache", "ConflictError",
    "ForbiddenError", "GoneError", "InvalidError", "Kind", "NotFoundError", "Object",
    "ServerError", "TooManyRequestsError", "UnreachableError", "remember",
]
