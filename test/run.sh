#!/usr/bin/env bash
# The whole test suite: build, then every compiled test file with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
# The AWS tests share one moto server (test/aws/moto-server.ts): it fails with "moto is not installed:
# pip install 'moto[server]'" if moto is missing, starts it on a free loopback port, waits for
# /moto-api/, runs the tests with AWS_ENDPOINT_URL and throwaway credentials, then stops it. With
# AWS_ENDPOINT_URL already set (e.g. LocalStack), the tests use that endpoint instead.
exec node dist/test/aws/moto-server.js -- node --test --test-concurrency=2 --test-timeout=180000 "${files[@]}"
