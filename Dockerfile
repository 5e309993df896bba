# syntax=docker/dockerfile:1
# The public pages' browser scripts: Tone.js and tonal from npm (pinned in package.json), and
# the client kit's browser bundle (clients/js), which pages/assets.py serves.
FROM node:20-slim AS browser
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY clients/js/package.json clients/js/package-lock.json clients/js/
RUN cd clients/js && npm ci --ignore-scripts --no-audit --no-fund
COPY clients/js/src clients/js/src
COPY clients/js/scripts clients/js/scripts
RUN cd clients/js && node scripts/build-browser.mjs

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# The locked dependencies in a layer of their own: rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
COPY . .
COPY --from=browser /src/node_modules/tone/build/Tone.js node_modules/tone/build/Tone.js
COPY --from=browser /src/node_modules/tonal/browser/tonal.min.js node_modules/tonal/browser/tonal.min.js
COPY --from=browser /src/clients/js/dist/browser/kit.js clients/js/dist/browser/kit.js
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev
# Run unprivileged; the embedded default's data directory is the only place it writes.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app app \
    && mkdir -p /app/data && chown app /app/data
USER app
ENV PATH="/app/.venv/bin:$PATH" PORT=3001 DATA_DIR=/app/data
EXPOSE 3001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3001'), timeout=2)"
CMD ["musicplayground", "serve"]
