# syntax=docker/dockerfile:1
#
# signal-sync worker image.
#
#   docker build -t signal-sync:0.1.0 .
#   docker run --rm -v "$PWD/config.yaml:/etc/signal-sync/config.yaml:ro" signal-sync:0.1.0
#
# Two stages on the same slim Python 3.13 base: `builder` installs the pinned, hash-checked
# dependencies (requirements.lock) and the project wheel into /opt/venv; `runtime` copies
# only that venv, so no compiler, pip cache or source tree reaches the final image.
#
# The base is pinned by tag only: a digest could not be looked up where this file was
# written. Pin it by digest for reproducible production builds, e.g.
#   docker buildx imagetools inspect python:3.13-slim-bookworm
# and build with --build-arg PYTHON_IMAGE=python:3.13.<patch>-slim-bookworm@sha256:<digest>.
# Python 3.13 rather than 3.11: the worker is CPU-bound on one core, and 3.13 drains ~10% faster
# here (docs/performance-history.md, sixth release); requirements.lock is compiled with it.
ARG PYTHON_IMAGE=python:3.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

# Compilers live only in this stage: every locked dependency has an x86_64 wheel, but
# faust-streaming ships no arm64 wheel and builds from its sdist there. (Unpinned apt
# versions are fine here: nothing from this layer reaches the final image.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first (their own layer, rebuilt only when the lock changes). Every
# requirement is pinned with its hashes; pip refuses anything unpinned or unhashed,
# including a transitive dependency missing from the lock.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# Then the project itself, without dependencies (they are all installed above).
COPY pyproject.toml README.m[d] ./
COPY signal_sync ./signal_sync
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && pip install --no-deps --no-index /tmp/wheels/signal_sync-*.whl \
    && pip check \
    && signal-sync --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=""
# Where the image's source lives; set it to the repository URL when publishing.
ARG SOURCE_URL=https://example.invalid/signal-sync

LABEL org.opencontainers.image.title="signal-sync" \
      org.opencontainers.image.description="Stream first-party analytics events from Kafka into Mautic and Mailgun, with one delivery outcome per event." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HEALTHCHECK_URL=http://127.0.0.1:6066/health

# Fixed non-root uid/gid (the Helm chart's runAsUser/runAsGroup). /var/lib/signal-sync is
# the writable state dir (table state, Faust data); /etc/signal-sync takes the config.
RUN groupadd --system --gid 10001 signal-sync \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/signal-sync \
       --no-create-home --shell /usr/sbin/nologin signal-sync \
    && mkdir -p /var/lib/signal-sync /etc/signal-sync \
    && chown 10001:10001 /var/lib/signal-sync \
    && chmod 0750 /var/lib/signal-sync

COPY --from=builder /opt/venv /opt/venv

WORKDIR /var/lib/signal-sync
VOLUME ["/var/lib/signal-sync"]
USER 10001:10001

# The worker's web server (worker.web_port): /health, /ready, /metrics.
EXPOSE 6066

# Liveness of the worker's web server, with the stdlib only (no curl in the image).
# A non-2xx answer raises, so the check fails. Set HEALTHCHECK_URL if web_port changes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]

ENTRYPOINT ["signal-sync"]
CMD ["worker", "-c", "/etc/signal-sync/config.yaml"]
