# modelfly: the production server (python serve.py) with the shipped models; the same image
# runs the jobs' worker: docker run modelfly python -m modelfly worker (README, "Jobs").
#   docker build -t modelfly . && docker run -p 5000:5000 modelfly
# BASE_IMAGE is the official slim Python image; a test passes a local stand-in where no
# registry can be reached.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin modelfly \
    && mkdir -p /var/lib/modelfly && chown 10001:10001 /var/lib/modelfly
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY firefly.yml predict.py serve.py ./
COPY modelfly/ modelfly/
COPY server/ server/
COPY models/ models/
# Configuration is by environment: MODELFLY_TOKEN, MODELFLY_MAX_BODY_BYTES, WEB_CONCURRENCY...
# (README, "Running in production"). The image listens on all interfaces, port 5000.
# Signed models only: mount the public key read-only and name it (never the private key):
#   -v $PWD/keys/modelfly-signing.pub:/etc/modelfly/trusted-keys/team.pub:ro
#   -e MODELFLY_TRUSTED_KEYS=/etc/modelfly/trusted-keys/team.pub
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODELFLY_BIND=0.0.0.0:5000 \
    MODELFLY_DATA_DIR=/var/lib/modelfly
USER 10001
EXPOSE 5000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['MODELFLY_BIND'].rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2)"]
CMD ["python", "serve.py"]
