# One image for the team stack: the MLflow server, the Ray head and the Ray GPU workers.
# torch from PyPI is the CUDA build, so the same image drives the GPUs of the workers.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends git curl \
    && rm -rf /var/lib/apt/lists/*
RUN pip install torch==2.14.1 torchvision==0.29.1

WORKDIR /opt/hpsweep
COPY pyproject.toml README.md ./
COPY hpsweep ./hpsweep
COPY trainables ./trainables
COPY sweeps ./sweeps
# psycopg: the MLflow server's PostgreSQL driver. Add your own trainable packages here, e.g.
#   COPY plugins/mytrainables ./plugins/mytrainables
#   RUN pip install ./plugins/mytrainables
RUN pip install '.' 'psycopg[binary]>=3.2'

RUN useradd --create-home --uid 1000 hpsweep && mkdir -p /shared && chown hpsweep /shared
USER hpsweep
WORKDIR /home/hpsweep
