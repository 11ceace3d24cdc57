#!/bin/sh
# Build the agora:dev image FROM scratch: the static agora binary plus the
# host's /bin/sh and its shared libraries (for task commands).
set -eu
cd "$(dirname "$0")/.."
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 go build -o "$ctx/agora" ./cmd/agora
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/tmp"
sh=$(readlink -f /bin/sh)
cp "$sh" "$ctx/rootfs/bin/sh"
for lib in $(ldd "$sh" | grep -o '/[^ ]* (0x' | cut -d' ' -f1); do
	mkdir -p "$ctx/rootfs$(dirname "$lib")"
	cp "$lib" "$ctx/rootfs$lib"
done
cp deploy/Dockerfile "$ctx/Dockerfile"
docker build -t "${IMAGE:-agora:dev}" "$ctx"
