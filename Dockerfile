# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
RUN npm ci --ignore-scripts && npx tsc -p tsconfig.json

# Runtime stage: production dependencies and compiled JavaScript only.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config/example.yaml /config/walhook.yaml
USER node
# node as PID 1 does not forward signals to children, but walhook runs no children
# and handles SIGTERM itself; --init in `docker run` or tini is not needed.
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["run", "--config", "/config/walhook.yaml"]
