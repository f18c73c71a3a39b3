# One image for the bridge and the dashboard (Mosquitto uses the official image).
# Build stage: wheels only; the runtime stage has no compiler and runs as a plain user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY iotpipe iotpipe
COPY bridge bridge
COPY broker broker
COPY dashboard dashboard
COPY firmware firmware
# [board]: the MicroPython unix port for the virtual board (x86-64 only; skipped elsewhere).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[board]"

FROM python:3.11-slim
RUN useradd --create-home --uid 1000 --groups dialout iotpipe \
    && mkdir /data && chown iotpipe /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER iotpipe
ENV IOTPIPE_DATA=/data PYTHONUNBUFFERED=1
VOLUME /data
ENTRYPOINT ["iotpipe"]
CMD ["--help"]
