# palmgate container image: the gateway, the sandbox and palmctl, running as a non-root user.
#
#   docker build -t palmgate .
#   docker run --rm -v /secrets:/secrets:ro -p 50051:50051 \
#     -e PALMGATE_MCHID=1900000001 -e PALMGATE_MERCHANT_SERIAL=5157F0... \
#     -e PALMGATE_MERCHANT_PRIVATE_KEY=/secrets/apiclient_key.pem \
#     -e PALMGATE_WECHATPAY_PUBLIC_KEY=/secrets/pub_key.pem -e PALMGATE_WECHATPAY_PUBLIC_KEY_ID=PUB_KEY_ID_... \
#     palmgate
#
# Secrets are mounted as files, never baked in or passed as values. See docker-compose.yml for a
# gateway in front of palmgate-sandbox.

# Build stage: the Debian packages scripts/setup installs (minus test-only ones), Release build.
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto \
      golang-github-gogo-googleapis-dev \
      libabsl-dev libcurl4-openssl-dev libssl-dev libboost-dev nlohmann-json3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build /build --target palmgate palmgate-sandbox palmctl \
 && strip /build/server/palmgate /build/sandbox/palmgate-sandbox /build/client/palmctl

# Runtime stage: shared libraries only (libgrpc++1.51 brings libgrpc29, re2, c-ares, zlib).
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libcurl4 libssl3 ca-certificates libabsl20220623 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 palmgate \
 && useradd --system --uid 10001 --gid palmgate --home-dir /var/lib/palmgate --shell /usr/sbin/nologin palmgate \
 && mkdir -p /var/lib/palmgate/keys \
 && chown -R palmgate:palmgate /var/lib/palmgate
COPY --from=build /build/server/palmgate /usr/local/bin/palmgate
COPY --from=build /build/sandbox/palmgate-sandbox /usr/local/bin/palmgate-sandbox
COPY --from=build /build/client/palmctl /usr/local/bin/palmctl
USER palmgate
WORKDIR /var/lib/palmgate
ENV PALMGATE_LISTEN=0.0.0.0:50051
EXPOSE 50051
# Asks the gateway's own grpc.health.v1 service; SERVING only once keys are loaded, NOT_SERVING while draining.
# (No --start-period: dockerfilelint 1.8 rejects the hyphenated option; the gateway is SERVING within a second.)
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
  CMD ["palmctl", "health", "--addr", "127.0.0.1:50051", "--timeout", "3s"]
STOPSIGNAL SIGTERM
CMD ["palmgate"]
