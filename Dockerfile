# Minimal container; the production image (healthcheck, hadolint in CI) is tracked in its own issue.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /data tailscribe && mkdir /data && chown tailscribe /data
USER tailscribe
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["tailscribe", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]
