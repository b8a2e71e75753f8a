# syntax=docker/dockerfile:1
# One image for every program: `externalip agent`, `externalip scheduler`,
# `externalip simple` (the manifests pick one with args). `make image` builds
# it with podman from a Debian base made locally (no registry needed); with a
# registry:
#   docker build -t registry.example.com/externalip:0.1.0 .
# BASE is any Debian-like image with python3 >= 3.11 (python:3.11-slim, or the
# base tools/image/base.sh makes with mmdebstrap).
ARG BASE=python:3.11-slim

# --- build: a virtualenv with the locked dependencies and the project -------
FROM ${BASE} AS build
# Debian's python3 lacks ensurepip (it is in python3-venv); python:*-slim has it.
# Only this stage gets it: the final image carries no pip.
RUN python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
RUN python3 -m venv /opt/externalip
WORKDIR /src
COPY requirements.lock ./
# `--secret id=ca,src=<CA bundle>`: for networks whose TLS is re-signed by a
# local CA (pip trusts only its own bundle); without it pip uses its own.
# --require-hashes: exactly the locked versions, each checked against its hash.
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    /opt/externalip/bin/pip install --no-cache-dir --quiet --require-hashes --no-deps \
      -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    /opt/externalip/bin/pip wheel --no-cache-dir --quiet --no-deps --wheel-dir /wheel . \
 && /opt/externalip/bin/pip install --no-cache-dir --quiet --no-deps --no-index /wheel/*.whl \
 && /opt/externalip/bin/pip check \
 && /opt/externalip/bin/pip uninstall --quiet --yes pip setuptools \
 && rm -f /opt/externalip/bin/activate* /opt/externalip/bin/Activate.ps1

# --- run: the base and the virtualenv, nothing else ----------------------
FROM ${BASE}
# libnftables1: the agent's fence (net/nftfence.py loads it with ctypes); without
# it a frozen agent's node could keep answering for its addresses
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnftables1 >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=build /opt/externalip /opt/externalip
RUN groupadd --gid 65532 externalip \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin externalip
# Non-root by default (the scheduler and `externalip status` need nothing
# more). The agent's manifest runs it as uid 0 with only the NET_ADMIN and
# NET_RAW capabilities, which netlink address changes and raw ARP/NA sockets
# need; it is never privileged. The root filesystem may be read-only: the
# bytecode is compiled at install time and nothing writes at run time.
USER 65532:65532
ENV PATH=/opt/externalip/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# the health/metrics port every program listens on (--metrics-addr)
EXPOSE 9440
ENTRYPOINT ["externalip"]
CMD ["--help"]
