# syntax=docker/dockerfile:1
# One image for every program: `externalip agent`, `externalip scheduler`,
# `externalip simple` (the manifests pick one with args).
#   docker build -t registry.example.com/externalip:0.1.0 .
ARG PYTHON_VERSION=3.11

# --- build: the project's wheel and wheels of all its dependencies ---------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- run: only the installed wheels, no compilers, no sources --------------
FROM python:${PYTHON_VERSION}-slim
# --no-index: the final stage installs exactly what the build stage resolved
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels externalip \
 && useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin externalip
# Non-root by default (the scheduler and `externalip status` need nothing
# more). The agent's manifest runs it as uid 0 with only the NET_ADMIN and
# NET_RAW capabilities, which netlink address changes and raw ARP/NA sockets
# need; it is never privileged.
USER 65532:65532
ENV PYTHONUNBUFFERED=1
# the health/metrics port every program listens on (--metrics-addr)
EXPOSE 9440
ENTRYPOINT ["externalip"]
CMD ["--help"]
