# vigil's container image, for those who build with Docker or Buildah.
# `make image` builds the same image without a container engine.
#   docker build -t vigil:dev .
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-X github.com/vigil-ebpf/vigil/pkg/version.Version=${VERSION} -X github.com/vigil-ebpf/vigil/pkg/version.Commit=${COMMIT}" \
      -o /out/usr/local/bin/vigil ./cmd/vigil \
 && mkdir -p /out/etc/ssl/certs /out/etc/vigil /out/etc/vigil-key /out/var/lib/vigil /out/run/vigil \
      /out/host/sys/fs/cgroup /out/tmp \
 && chmod 0700 /out/etc/vigil-key /out/var/lib/vigil /out/run/vigil && chmod 1777 /out/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nnogroup:x:65534:\n' > /out/etc/group

FROM scratch
COPY --from=build /out/ /
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Root inside the container: the agent needs CAP_BPF, CAP_PERFMON,
# CAP_NET_ADMIN and CAP_SYS_PTRACE, which the DaemonSet grants one by one.
USER 0:0
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["agent"]
