#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (system packages + npm deps),
# type-checks, and runs the whole suite with Node's test runner. Extra args are passed to `node --test`
# (e.g. ./scripts/test.sh --test-name-pattern=coalesc).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker-registry skopeo umoci podman buildah containerd pebble redis-server haproxy nginx openssl ca-certificates curl systemd python3-venv chromium fonts-dejavu-core)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Kubernetes schema validator for deploy/kubernetes (test/clientconfig/deploy.test.ts), pinned, in a git-ignored venv.
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! .tools/k8s-venv/bin/kubernetes-validate --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
  python3 -m venv .tools/k8s-venv
  .tools/k8s-venv/bin/pip install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# Go test tools (OCI conformance suite, distribution v3, oras), pinned, built into .tools/bin; skipped when built.
./scripts/tools.sh

# moto's S3 server (the second S3 implementation of the storage and scale-out tests), pinned, in .tools/venv.
./scripts/moto.sh

npm ci --no-audit --no-fund
npx tsc -p tsconfig.json --noEmit
# The layer rules (folders import only downward, no cycles, storage/upstream never see HTTP-server code).
npx depcruise src --config .dependency-cruiser.cjs

mapfile -t files < <(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=2 --test-timeout=300000 "$@" "${files[@]}"
