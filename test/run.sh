#!/usr/bin/env bash
# The whole test suite: build, then every compiled test file with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
exec node --test --test-concurrency=2 --test-timeout=180000 "${files[@]}"
