# syntax=docker/dockerfile:1
# Two images from one build: `--target runtime` (what the runtime pods run, `warmpool runtime serve`) and the
# last stage, `operator` (`warmpool operator run --all-namespaces`, the default command; a plain build gives it).
# The builder builds every wheel; each final stage installs the project's wheel and only the dependencies of its
# own entry point (requirements/common.txt plus runtime.txt or operator.txt), without a compiler, a cache or the
# wheels. `python -m tools.image_size` reports what each one installs.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY warmpool/ warmpool/
COPY runtime/warmpool_runtime/ runtime/warmpool_runtime/
COPY operator/warmpool_operator/ operator/warmpool_operator/
COPY contract/warmpool_contract/ contract/warmpool_contract/
# The lab's modules are small; their dependencies are the `lab` extra, which the images leave out.
COPY lab/warmpool_lab/ lab/warmpool_lab/
# The project's wheel and the wheels of all its dependencies (no extras), pinned by what resolves now.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# What both final images share: settings and the numeric non-root user.
FROM ${PYTHON_IMAGE} AS base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 65532 warmpool \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin warmpool

FROM base AS runtime
LABEL org.opencontainers.image.title="warmpool-runtime" \
      org.opencontainers.image.description="wasmtime runtime that keeps WebAssembly instances warm per tenant"
# The wheels and requirement files are bind-mounted from the builder, so no layer of this image holds them.
# pip resolves the runtime's requirements among the wheels; the project's wheel goes in without its full
# dependency list (the operator's and the command-line tools' are not wanted here); the import proves the
# runtime has what it needs.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/src/requirements,target=/requirements \
    pip install --no-cache-dir --no-index --find-links /wheels -r /requirements/common.txt -r /requirements/runtime.txt \
    && pip install --no-cache-dir --no-index --no-deps /wheels/warmpool-*.whl \
    && python -c "import warmpool.cli, warmpool_runtime.app, warmpool_runtime.server"
# Numeric, so that `runAsNonRoot` can be verified by the kubelet without reading /etc/passwd.
USER 65532:65532
WORKDIR /tmp
# 8080: runtime HTTP.
EXPOSE 8080
ENTRYPOINT ["warmpool"]
# The operator's runtime pods set their own command and arguments; this default serves a mounted config.
CMD ["runtime", "serve", "--config", "/etc/warmpool/runtime.yaml"]

FROM base AS operator
LABEL org.opencontainers.image.title="warmpool-operator" \
      org.opencontainers.image.description="Kubernetes operator that keeps WebAssembly instances warm per tenant"
# As above, with the operator's requirements. Then the Kubernetes client's code the operator never imports
# goes (tools/operator-image.prune, the one list of it; tools/image_prune.py applies it).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/src/requirements,target=/requirements \
    --mount=type=bind,source=tools/image_prune.py,target=/prune/image_prune.py \
    --mount=type=bind,source=tools/operator-image.prune,target=/prune/operator-image.prune \
    pip install --no-cache-dir --no-index --find-links /wheels -r /requirements/common.txt -r /requirements/operator.txt \
    && pip install --no-cache-dir --no-index --no-deps /wheels/warmpool-*.whl \
    && python /prune/image_prune.py /prune/operator-image.prune \
    && python -c "import warmpool.cli, warmpool_operator.app, warmpool_operator.kube"
USER 65532:65532
WORKDIR /tmp
# 9090: operator metrics; 8081: operator /healthz.
EXPOSE 9090 8081
ENTRYPOINT ["warmpool"]
CMD ["operator", "run", "--all-namespaces"]
