# Reproducible GPU runs of mmprep / mmtrain. Build from the repository root:
#   docker build -t modalrec .
#   docker run --gpus all -v $PWD/data:/data -v $PWD/out:/out modalrec mmprep build --dataset all-beauty --raw-dir /data --out /out/all-beauty
ARG BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md /src/
COPY mmprep /src/mmprep
COPY mmtrain /src/mmtrain
RUN pip install /src

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 modalrec
COPY --from=build /opt/venv /opt/venv
COPY recipes /opt/modalrec/recipes
USER modalrec
WORKDIR /work
VOLUME ["/data", "/out"]
CMD ["mmprep", "--help"]
