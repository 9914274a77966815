# Tarn's image: one `tarn` binary for every role (standalone, coordinator,
# executor, gateway, and the CLI), run as an unprivileged user, with the
# Python environment hosted `tarn-python` kernels use.
#
#   docker build -t tarn .                      # builds the engine (release)
#   docker run --network host tarn standalone   # a whole cluster on loopback
#
# The base images are arguments, so a registry mirror (or an image made
# locally, as dev/image.sh does) can stand in for the public ones.
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1.94-bookworm

# ---------------------------------------------------------------------------
# What every runtime image holds besides the binary.
FROM ${RUNTIME_IMAGE} AS runtime-base
# 1: the kernel environment (python3, bubblewrap and the packages of
# kernels/python/requirements.txt); 0: tarn-sql kernels only.
ARG KERNELS=1
COPY kernels/python/requirements.txt /opt/tarn/kernels/requirements.txt
COPY clients/python /opt/tarn/clients/python
RUN set -eux; \
    if [ "$KERNELS" = 1 ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends ca-certificates python3 python3-venv bubblewrap; \
      rm -rf /var/lib/apt/lists/*; \
      python3 -m venv /opt/tarn/kernel-env; \
      /opt/tarn/kernel-env/bin/pip install --no-cache-dir -r /opt/tarn/kernels/requirements.txt; \
      /opt/tarn/kernel-env/bin/pip install --no-cache-dir --no-deps /opt/tarn/clients/python; \
      chmod -R a+rX /opt/tarn/kernel-env; \
    fi; \
    useradd --uid 10001 --user-group --home-dir /home/tarn --create-home --shell /usr/sbin/nologin tarn
ENV TARN_GATEWAY__PYTHON_KERNEL_PYTHON=/opt/tarn/kernel-env/bin/python \
    TARN_LOG_JSON=true
WORKDIR /home/tarn
EXPOSE 50060 8060

# ---------------------------------------------------------------------------
# The runtime around a binary built outside the image (`--target prebuilt`,
# with the binary at dist/tarn): what CI does with the binary it has
# already compiled, instead of building the engine a second time.
FROM runtime-base AS prebuilt
COPY dist/tarn /usr/local/bin/tarn
USER 10001:10001
ENTRYPOINT ["tarn"]
CMD ["standalone", "--lake", "/home/tarn/lake", "--state-dir", "/home/tarn/state"]

# ---------------------------------------------------------------------------
# The engine, built in a Rust image.
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tarn-cli \
    && install -m 0755 target/release/tarn /usr/local/bin/tarn

# ---------------------------------------------------------------------------
# The image users run (the default target).
FROM runtime-base AS runtime
COPY --from=build /usr/local/bin/tarn /usr/local/bin/tarn
USER 10001:10001
ENTRYPOINT ["tarn"]
CMD ["standalone", "--lake", "/home/tarn/lake", "--state-dir", "/home/tarn/state"]
