# syntax=docker/dockerfile:1
# One image, two entry points: `warmpool operator run --all-namespaces` (the default command) and
# `warmpool runtime serve` (what the operator puts in the runtime pods it creates).
# Stage 1 builds every wheel; stage 2 installs them without a compiler, a cache or the wheels.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY warmpool/ warmpool/
COPY runtime/warmpool_runtime/ runtime/warmpool_runtime/
COPY operator/warmpool_operator/ operator/warmpool_operator/
COPY contract/warmpool_contract/ contract/warmpool_contract/
# The lab's modules are small; their dependencies are the `lab` extra, which the image leaves out.
COPY lab/warmpool_lab/ lab/warmpool_lab/
# The project's wheel and the wheels of its dependencies (no extras), pinned by what resolves now.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="warmpool" \
      org.opencontainers.image.description="Kubernetes operator and wasmtime runtime that keep WebAssembly instances warm per tenant" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# The wheels are bind-mounted from the builder, so no layer of this image holds them.
# The Kubernetes client ships a second, asyncio copy of its generated API (about 68 MB with its bytecode)
# that nothing here imports (the operator uses the threaded client): it is removed.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --no-deps /wheels/*.whl \
    && pip check \
    && python -c "import importlib.util, pathlib, shutil; shutil.rmtree(pathlib.Path(importlib.util.find_spec('kubernetes').origin).parent / 'aio')" \
    && groupadd --system --gid 65532 warmpool \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin warmpool
# Numeric, so that `runAsNonRoot` can be verified by the kubelet without reading /etc/passwd.
USER 65532:65532
WORKDIR /tmp
# 8080: runtime HTTP; 9090: operator metrics; 8081: operator /healthz.
EXPOSE 8080 9090 8081
ENTRYPOINT ["warmpool"]
CMD ["operator", "run", "--all-namespaces"]
