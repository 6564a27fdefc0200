#!/usr/bin/env bash
# Builds the medchain runtime image on a machine without any image registry.
#
#   deploy/docker/build-image.sh [--binary PATH] [--tag NAME] [--base IMAGE] [--base-name NAME]
#
# --binary  the medchain binary to put in the image (default: build target/release/medchain)
# --tag     the image's name (default medchain:local)
# --base    a base image you have (e.g. debian:bookworm-slim pulled from a registry); without
#           it, the base medchain-base:local is made from the binary's own shared libraries
#           (those `ldd` lists, the dynamic loader, a passwd entry for the node's user, the CA
#           certificates) and imported with `docker import`: nothing is pulled.
# --base-name  the name of that made base (default medchain-base:local)
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=""
tag="medchain:local"
base=""
base_name="medchain-base:local"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --base-name) base_name="$2"; shift 2 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v docker >/dev/null || { echo "build-image: docker is not installed" >&2; exit 2; }
if [ -z "$binary" ]; then
    ./scripts/install-deps.sh
    echo "build-image: building target/release/medchain" >&2
    cargo build --release --locked -p medchain
    binary=target/release/medchain
fi
[ -x "$binary" ] || { echo "build-image: $binary is not an executable file" >&2; exit 2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

if [ -z "$base" ]; then
    base="$base_name"
    root="$ctx/base"
    mkdir -p "$root/etc/ssl/certs" "$root/tmp"
    chmod 1777 "$root/tmp"
    # The loader and every shared library, at the path the binary looks them up by.
    ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
        while read -r lib; do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    printf 'root:x:0:0:root:/root:/sbin/nologin\nmedchain:x:10001:10001:medchain node:/data:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nmedchain:x:10001:\n' >"$root/etc/group"
    # Peer addresses may be DNS names (container names, Kubernetes services).
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    fi
    tar -C "$root" --owner=0 --group=0 -c . | docker import \
        --message "medchain base: the shared libraries of $(basename "$binary")" - "$base" >/dev/null
    echo "build-image: base $base made from the binary's libraries" >&2
fi

mkdir -p "$ctx/image/data"
cp "$binary" "$ctx/image/medchain"
cp deploy/docker/Dockerfile "$ctx/image/Dockerfile"
if ! out=$(docker build --build-arg BASE="$base" --tag "$tag" "$ctx/image" 2>&1); then
    echo "$out" >&2
    echo "build-image: docker build failed" >&2
    exit 1
fi
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "build-image: $tag built ($((size / 1000000)) MB, base $base)"
