# syntax=docker/dockerfile:1
# The streamst service image. Two stages: `build` installs streamst and its dependencies into
# a virtual environment (compilers live only there); the runtime stage copies that environment
# onto a slim Python image and runs as an unprivileged user.
#
# Models are not baked in. Everything every profile needs lives in the /models volume:
# hub downloads of the `default` profile (HF_HOME, MODELSCOPE_CACHE), the offline models that
# `streamst models build` makes for `tiny` / `random-real` (STREAMST_MODELS/store), and the
# profiles themselves. docker/serve.sh builds a profile's offline models on first start.
#
#   docker build -t streamst .
#   docker run -p 8765:8765 -v streamst-models:/models -e STREAMST_TOKEN=secret streamst
#   docker run ... -e STREAMST_PROFILE=tiny streamst      # offline, random weights
# or with compose.yaml: `docker compose up -d`.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# CPU wheel; for a GPU image install a CUDA build of torch here instead.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamst ./streamst
# not editable: the environment must work without /src. The server needs no [mic] extra
# (the microphone client runs on the speaker's machine).
RUN pip install .

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 streamst \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin streamst \
 && mkdir -p /models \
 && chown 10001:10001 /models
COPY --from=build /opt/venv /opt/venv
COPY streamst/data/profiles /opt/streamst/profiles
COPY --chmod=755 docker/serve.sh /opt/streamst/serve.sh
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMST_MODELS=/models \
    HF_HOME=/models/hf \
    MODELSCOPE_CACHE=/models/modelscope \
    XDG_CACHE_HOME=/models/cache \
    STREAMST_PROFILE=default \
    STREAMST_PORT=8765
# numeric, so that runtimes enforcing runAsNonRoot can check it
USER 10001:10001
WORKDIR /home/streamst
VOLUME ["/models"]
EXPOSE 8765
# The first start of the default profile downloads several GB into /models before the
# service answers: a long start period keeps it from being marked unhealthy meanwhile.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30m --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('STREAMST_PORT', '8765'); r = urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
CMD ["/opt/streamst/serve.sh"]
