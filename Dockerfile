# syntax=docker/dockerfile:1
#
# One image recipe for every Orderflow process. Pick the process with the
# SERVICE build argument, a path under services/:
#   order, inventory, payment, payment/provider, notification, identity
#   docker build --build-arg SERVICE=payment/provider -t orderflow-provider .
# docker-compose.yml builds all six this way. (Ory Hydra and HAProxy are
# their upstream images.)

FROM golang:1.26-bookworm AS build
ARG SERVICE
WORKDIR /src

# Modules first, so a code change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    if [ -z "${SERVICE}" ] || [ ! -f "services/${SERVICE}/main.go" ]; then \
      echo "set --build-arg SERVICE to one of: order inventory payment payment/provider notification identity" >&2; \
      exit 1; \
    fi && \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/app "./services/${SERVICE}" && \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/healthcheck ./tools/healthcheck

# Static binaries need no libc: distroless "static" has CA certificates,
# tzdata and a nonroot user, and no shell, so the health check is a binary
# too.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /app
COPY --from=build /out/healthcheck /healthcheck
USER nonroot:nonroot
ENTRYPOINT ["/app"]
