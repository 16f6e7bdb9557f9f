#!/usr/bin/env bash
# Builds the Go test tools into .tools/bin (git-ignored) from the Go module proxy, pinned.
# Quick when already built: a pinned binary that exists is not rebuilt (its name carries the version).
#   scripts/tools.sh            build all
#   scripts/tools.sh registry-v3 oras conformance   build some
# Binaries (stable names are symlinks to the versioned file):
#   .tools/bin/oci-conformance  OCI distribution-spec conformance suite (go test -c)
#   .tools/bin/registry-v3      distribution v3 registry (OCI 1.1 referrers API)
#   .tools/bin/oras             oras CLI
set -euo pipefail
cd "$(dirname "$0")/.."

CONFORMANCE_MOD=github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
DISTRIBUTION_MOD=github.com/distribution/distribution/v3
DISTRIBUTION_VERSION=v3.1.2
ORAS_MOD=oras.land/oras
ORAS_VERSION=v1.3.6

TOOLS="$PWD/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
  echo "scripts/tools.sh: the Go toolchain (go) is required to build the test tools" >&2
  exit 1
fi
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

# build <link name> <versioned file> <module> <version> <package> <mode: build|test>
build() {
  local link=$1 file=$2 mod=$3 version=$4 pkg=$5 mode=$6
  if [ -x "$BIN/$file" ]; then
    ln -sf "$file" "$BIN/$link"
    return
  fi
  echo "building $link ($mod@$version)"
  local work
  work=$(mktemp -d "$TOOLS/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    go mod init regcache.test/tools >/dev/null 2>&1
    # The package (not only the module): go.sum then covers everything it imports.
    go get "$pkg@$version" 2>&1 | grep -v '^go: \(downloading\|added\|upgraded\|finding\)' >&2 || true
    if [ "$mode" = test ]; then
      go test -c -o "$BIN/$file.tmp" "$pkg"
    else
      go build -trimpath -o "$BIN/$file.tmp" "$pkg"
    fi
  )
  rm -rf "$work"
  trap - EXIT
  mv "$BIN/$file.tmp" "$BIN/$file"
  ln -sf "$file" "$BIN/$link"
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(conformance registry-v3 oras)
for t in "${want[@]}"; do
  case "$t" in
    conformance) build oci-conformance "oci-conformance-$CONFORMANCE_VERSION" "$CONFORMANCE_MOD" "$CONFORMANCE_VERSION" "$CONFORMANCE_MOD" test ;;
    registry-v3) build registry-v3 "registry-$DISTRIBUTION_VERSION" "$DISTRIBUTION_MOD" "$DISTRIBUTION_VERSION" "$DISTRIBUTION_MOD/cmd/registry" build ;;
    oras) build oras "oras-$ORAS_VERSION" "$ORAS_MOD" "$ORAS_VERSION" "$ORAS_MOD/cmd/oras" build ;;
    *) echo "scripts/tools.sh: unknown tool $t (conformance, registry-v3, oras)" >&2; exit 2 ;;
  esac
done
