# The sidecar's image: `docker build -t chatwoot-mcp-connector .`
# Runs `python -m sidecar` as an unprivileged user; the SQLite state and the logs live in the
# /data volume, shared with the console (`docker compose run --rm console`).
# scripts/container-smoke builds this image and checks the running container (CI: .ci/run);
# tests/deploy/test_wheel.py checks the wheel it installs on its own.

# ---- builder: wheels for the project and its pinned dependencies, assembled into a venv ----
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY sidecar/ ./sidecar/
COPY state/ ./state/
COPY console/ ./console/
COPY connector_config/ ./connector_config/

# The dependencies come from requirements.lock (every package of the tree, pinned, with its
# hashes: what CI tested; `make lock` writes it), the project's own wheel from the sources.
# Every dependency has a binary wheel for CPython 3.11 on Linux, so no compiler is needed.
# The venv is created without pip (pip arrives only as a dependency of sqlite-utils); the
# runtime image only ever runs the installed code.
# --no-index on the installs proves the locked wheel set is complete and the only one used.
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir --no-index --find-links /wheels \
       --require-hashes -r requirements.lock \
    && pip --python /opt/venv/bin/python install --no-cache-dir --no-index --no-deps /wheels/chatwoot_mcp_connector-*.whl

# ---- runtime: the venv, the default config and an unprivileged user; nothing else ----
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="chatwoot-mcp-connector" \
      org.opencontainers.image.description="Sidecar connecting Chatwoot conversations to MCP-Crew crews, with its ops console"

# Environment variables override config.yaml (README, "Configuration reference").
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SIDECAR_CONFIG=/app/config.yaml \
    SIDECAR_DB=/data/connector.db \
    SIDECAR_LOG_DIR=/data/logs

# A fixed uid/gid, so a host folder mounted at /data can be given to it (chown 10001:10001).
RUN groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid connector --create-home --home-dir /home/connector \
       --shell /usr/sbin/nologin connector \
    && mkdir -p /data/logs \
    && chown -R connector:connector /data

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Owned by root: the code and the default config cannot be changed by the running process.
# Mount your own at /app/config.yaml (or point SIDECAR_CONFIG elsewhere).
COPY config.yaml /app/config.yaml

# Numeric, so runtimes (Kubernetes runAsNonRoot) can tell it is not root without /etc/passwd.
USER 10001:10001
VOLUME ["/data"]
EXPOSE 5000

# Standard library only (the slim image has no curl). /health answers 503 only when the
# sidecar is down, which urlopen raises as an error, so the exit status is non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('SIDECAR_PORT') or '5000'), timeout=4)"]

# The console runs from the same image: `docker run --rm -it -v <volume>:/data IMAGE python -m console`.
CMD ["python", "-m", "sidecar"]
