# shiplog's managed-plugin rootfs. `npm run plugin` (scripts/build-plugin.mjs) builds this image, exports
# its filesystem as the plugin rootfs next to config.json and runs `docker plugin create`.
# NODE_IMAGE: the base of both stages, a current Node LTS by default; pass a local image where no
# registry is reachable (the tests use one assembled from the machine's own node, npm and busybox).
# The build stage runs `npm ci`: build with `--network host` so it reaches the npm registry.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# PEM certificates npm must trust besides node's own (a TLS-intercepting proxy); build stage only.
ARG EXTRA_CA_CERTS=""
COPY package.json package-lock.json ./
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra-ca.pem; export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi; \
    npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY proto proto
COPY scripts/gen-proto.mjs scripts/gen-proto.mjs
COPY src src
COPY sinks sinks
RUN npm run build && npm prune --omit=dev --no-audit --no-fund --loglevel=error

# Runtime: node, dist/ and production node_modules. npm, npx, corepack and yarn are removed: the
# plugin never runs them (rm -f is a no-op where the base image lacks them).
FROM ${NODE_IMAGE}
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
WORKDIR /opt/shiplog
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENTRYPOINT ["/usr/local/bin/node", "/opt/shiplog/dist/src/main.js"]
