# shiplog's managed-plugin rootfs. `npm run plugin` builds this image, exports its filesystem as the
# plugin rootfs next to config.json and runs `docker plugin create`.
# NODE_IMAGE: the base, a current Node LTS by default; pass a local image where no registry is reachable
# (the tests use one assembled from the machine's own node).
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY proto proto
COPY scripts/gen-proto.mjs scripts/gen-proto.mjs
COPY src src
COPY sinks sinks
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
WORKDIR /opt/shiplog
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENTRYPOINT ["node", "/opt/shiplog/dist/src/main.js"]
