# syntax=docker/dockerfile:1
# Production image of tailscribe.
#   docker build -t tailscribe .
#   docker run -d -p 8080:8080 -v tailscribe-data:/data tailscribe
#   docker logs <container>    # the generated token, printed once on first start when none is set
# Or `docker compose up -d` with docker-compose.yml. Any setting is an environment variable
# TAILSCRIBE_<NAME> (README, "Configuration"); the data directory is the volume /data.

# Stage 1: install tailscribe and its dependencies into a virtual environment. Every dependency
# ships manylinux wheels for CPython 3.11; tailscribe's own Cython modules (app/**/*.pyx) are
# compiled with the full (non-slim) image's gcc, which stays behind in this stage. The full and slim
# images install Python at the same /usr/local path, so the venv runs unchanged in stage 2. pip
# compiles the bytecode here, since the final image may have a read-only root file system.
FROM python:3.11-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/tailscribe
COPY pyproject.toml setup.py README.md ./
COPY app ./app
RUN /opt/tailscribe/bin/pip install --no-cache-dir ".[nats,objectstore]" \
    && /opt/tailscribe/bin/tailscribe --version

# Stage 2: the same base image (the venv points at its /usr/local/bin/python3.11), no build
# leftovers, a fixed non-root user and nothing writable but /data, so the root file system can
# be mounted read-only.
FROM python:3.11-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tailscribe" \
      org.opencontainers.image.description="Self-hosted, Panther-style HTTP receiver for Tailscale log streaming" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
ENV PATH=/opt/tailscribe/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TAILSCRIBE_DATA_DIR=/data
RUN groupadd --system --gid 10001 tailscribe \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tailscribe \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=builder /opt/tailscribe /opt/tailscribe
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# slim has no curl: ask /healthz with the standard library, on the port and with the scheme the
# environment gives (the certificate is not checked: it is not issued for 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; tls = os.environ.get('TAILSCRIBE_TLS_CERT'); r.urlopen(('https' if tls else 'http') + '://127.0.0.1:' + os.environ.get('TAILSCRIBE_PORT', '8080') + '/healthz', timeout=4, context=ssl._create_unverified_context() if tls else None)"]
# Exec form: tailscribe is PID 1 and gets SIGTERM directly, so it drains in-flight requests.
ENTRYPOINT ["tailscribe", "serve", "--host", "0.0.0.0"]
