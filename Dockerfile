# fakesys and its test suite. scripts/container-test builds this and runs the tests inside
# with --device /dev/fuse --cap-add SYS_ADMIN. The base is a plain Debian bookworm; where no
# image registry is reachable, scripts/container-test makes it locally with debootstrap.
ARG BASE=localhost/fakesys-debian:bookworm
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates python3 python3-venv python3-dev gcc pkg-config \
      fuse3 libfuse3-dev pciutils util-linux udev bash \
 && rm -rf /var/lib/apt/lists/*

# Behind a TLS-intercepting proxy the build needs the host's CA bundle to reach PyPI;
# scripts/container-test puts it in .host-ca.crt (empty when there is none to add).
COPY .host-ca.crt /tmp/host-ca.crt
RUN if [ -s /tmp/host-ca.crt ]; then cp /tmp/host-ca.crt /etc/ssl/certs/ca-certificates.crt; fi

WORKDIR /src
COPY . /src
RUN scripts/setup --test
CMD ["scripts/test"]
