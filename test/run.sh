#!/usr/bin/env bash
# The whole test suite: lint, typecheck, build, then every compiled test file with node's test runner.
# (`npm run test:unit` is the fast tier: a subset, run from source.)
set -euo pipefail
cd "$(dirname "$0")/.."
# The dashboard test drives Debian's chromium (playwright-core, no browser download); install it when
# missing and we may (root with apt-get, as in CI), else the test fails naming what to install.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "test/run.sh: installing Debian's chromium for the dashboard test" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "test/run.sh: format check" >&2
npm run --silent format:check
echo "test/run.sh: lint" >&2
npm run --silent lint
echo "test/run.sh: typecheck" >&2
npm run --silent typecheck
# Compiled tests of files since moved or deleted must not run.
rm -rf dist/test
npm run --silent build
# The generated protocol types must match protos/ (fails naming the file and line; fix: npm run gen).
npm run --silent gen:check
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
# The AWS tests share one moto server (test/aws/moto-server.ts): it fails with "moto is not installed:
# pip install 'moto[server]'" if moto is missing, starts it on a free loopback port, waits for
# /moto-api/, runs the tests with AWS_ENDPOINT_URL and throwaway credentials, then stops it. With
# AWS_ENDPOINT_URL already set (e.g. LocalStack), the tests use that endpoint instead.
# The per-file timeout leaves room for the AWS rollout tests (test/aws/rollout|rollback.test.ts), each of
# which deploys several versions through the emulator, and for test/package (installs a scaffolded app,
# two CDK synths, an emulator deployment: 3-6 minutes), each beside another file on a busy machine.
exec node dist/test/aws/moto-server.js -- node --test --test-concurrency=2 --test-timeout=600000 "${files[@]}"
