#!/bin/sh
# Build the agora:dev image FROM scratch: the static agora binary plus the
# host's /bin/sh and its shared libraries (for task commands).
# IMAGE names the image (default agora:dev), VERSION the version it reports;
# AGORA_BIN, if set, is a static agora binary to use instead of building one.
set -eu
cd "$(dirname "$0")/.."
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
if [ -n "${AGORA_BIN:-}" ]; then
	cp "$AGORA_BIN" "$ctx/agora" # a static binary built already (the compose test's)
else
	CGO_ENABLED=0 go build -ldflags "-X main.version=$version" -o "$ctx/agora" ./cmd/agora
fi
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/tmp"
sh=$(readlink -f /bin/sh)
cp "$sh" "$ctx/rootfs/bin/sh"
for lib in $(ldd "$sh" | grep -o '/[^ ]* (0x' | cut -d' ' -f1); do
	mkdir -p "$ctx/rootfs$(dirname "$lib")"
	cp "$lib" "$ctx/rootfs$lib"
done
cp deploy/Dockerfile "$ctx/Dockerfile"
docker build -t "${IMAGE:-agora:dev}" "$ctx"
