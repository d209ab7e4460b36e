# syntax=docker/dockerfile:1
#
# walhook container image. Build it from the repository root:
#
#   docker build -t walhook:0.1.0 .
#
# Mount the configuration at /config/walhook.yaml and pass its ${VAR} references, such as
# DATABASE_URL, as environment variables. test/integration/dockerfile.test.ts runs the
# same npm and node commands outside Docker and checks the structure of this file.

ARG NODE_IMAGE=node:20-bookworm-slim

# Compiles TypeScript with the dev dependencies. `--ignore-scripts` skips the package's
# `prepare` script, which would run tsc before src/ is copied, and the install scripts
# of test-only packages such as embedded-postgres. tsc therefore runs explicitly.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json

# Installs the production dependencies alone, so no compiler or test package reaches
# the final image.
FROM ${NODE_IMAGE} AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# walhook handles SIGTERM and SIGINT itself, but only once `run` has connected and
# installed its handlers. The kernel drops a signal sent to PID 1 when the process has
# no handler for it, so node as PID 1 would ignore a SIGTERM that arrives during start
# or while another command (validate, dead-letters) runs, and Kubernetes would wait for
# the whole grace period. tini runs as PID 1, forwards signals to node and reaps
# zombies. It is Debian's package, so it works without `docker run --init` and under
# Kubernetes, which has no such option.
RUN apt-get update \
  && apt-get install --yes --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# A default configuration; mount your own file over it.
COPY config/example.yaml /config/walhook.yaml

# The node user of the official Node.js image, by number so that Kubernetes can check
# runAsNonRoot. The application files stay owned by root and read-only to walhook.
USER 1000:1000

EXPOSE 8080

# Docker's health check; Kubernetes ignores it and uses the probes of the Deployment.
# It requests /healthz on server.port 8080. Set WALHOOK_HEALTHCHECK_URL when
# server.port or server.host differ. node runs it because the slim image has no curl.
ENV WALHOOK_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.WALHOOK_HEALTHCHECK_URL, { signal: AbortSignal.timeout(4000) }).then((response) => process.exit(response.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/cli/main.js"]
CMD ["run", "--config", "/config/walhook.yaml"]
