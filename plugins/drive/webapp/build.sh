#!/usr/bin/env sh
# Rebuild static/ from src/ (the same as `npm run build`); NODE_PATH may name where the
# npm modules of package.json are installed.
set -eu
cd "$(dirname "$0")"
ESBUILD="${ESBUILD:-esbuild}"
OUT="${1:-static}"
mkdir -p "$OUT"
"$ESBUILD" src/app.js --bundle --format=esm --target=es2020 --minify --legal-comments=none \
    --outfile="$OUT/app.js" --log-level=warning
cp src/index.html src/app.css "$OUT/"
