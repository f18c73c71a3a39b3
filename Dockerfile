# One image for the bridge and the dashboard (Mosquitto runs from the official image).
# Build stage: the package and its dependencies as wheels. Runtime stage: only those
# wheels installed — no compiler (python:slim has none), no source tree, no pip cache —
# and a plain user. tests/test_deploy.py checks this file against docs/deploy.md.
# docker compose builds it once, as its init service's image: `docker compose build`, or
# `DOCKER_BUILDKIT=0 docker compose build` where BuildKit cannot reach an image registry.
ARG PYTHON=3.11
FROM python:${PYTHON}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY iotpipe iotpipe
COPY firmware firmware
# The install of docs/deploy.md, `pip install ".[board]"`, as wheels. [board] is the
# MicroPython unix port for the virtual board: x86-64 only, skipped on a Raspberry Pi.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[board]"

FROM python:${PYTHON}-slim
# dialout is gid 20 here as on Debian and Raspberry Pi OS: the group of /dev/ttyUSB*
# and /dev/ttyACM*, so the bridge can open the board's port without root.
# compose's init makes the broker's TLS CA with the openssl command (iotpipe/broker/tls.py); the
# slim image has it as a dependency of ca-certificates, and the build stops if it ever lacks it.
RUN useradd --create-home --uid 1000 --groups dialout iotpipe \
    && install -d -o iotpipe -g iotpipe /data \
    && openssl version
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER iotpipe
WORKDIR /home/iotpipe
ENV IOTPIPE_DATA=/data PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
VOLUME /data
# Asks the part this container runs how it is: the dashboard's /healthz (ok and subscribed),
# the bridge's MQTT connection on its --metrics endpoint (see iotpipe/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "iotpipe.healthcheck"]
ENTRYPOINT ["iotpipe"]
CMD ["--help"]
