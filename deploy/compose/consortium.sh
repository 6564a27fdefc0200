#!/usr/bin/env bash
# The key ceremony of the compose consortium, run with the medchain image (nothing else needed):
# each hospital's key made in its own directory, genesis built from the public keys alone
# (peers by container name), each node's configuration written. Then `docker-compose up -d`.
#
#   deploy/compose/consortium.sh init [--engine pbft|pos|pow] [--dir DIR] [--force]
#
# --engine  the consensus engine (default: $MEDCHAIN_ENGINE, else pbft)
# --dir     where the members' directories go (default: deploy/compose/members)
# --force   replace an existing consortium in DIR (its keys and data are deleted)
# Environment: MEDCHAIN_IMAGE (default medchain:local, built by deploy/docker/build-image.sh).
# With the default DIR, the settings docker-compose needs (MEDCHAIN_DIR, MEDCHAIN_UID,
# MEDCHAIN_GID, MEDCHAIN_IMAGE) go to deploy/compose/.env; otherwise they are printed to export.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

[ "${1:-}" = "init" ] || { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }
shift
engine="${MEDCHAIN_ENGINE:-pbft}"
dir="$here/members"
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --engine) engine="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --force) force=1; shift ;;
        *) echo "consortium: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$engine" in pbft | pos | pow) ;; *) echo "consortium: --engine pbft, pos or pow" >&2; exit 2 ;; esac
image="${MEDCHAIN_IMAGE:-medchain:local}"
docker image inspect "$image" >/dev/null 2>&1 ||
    { echo "consortium: no image $image (deploy/docker/build-image.sh makes it)" >&2; exit 2; }
members=(st-mary riverside hillside northgate)
if [ -e "$dir/genesis.toml" ]; then
    [ "$force" = 1 ] || { echo "consortium: $dir holds a consortium; --force replaces it" >&2; exit 2; }
    rm -rf "$dir"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

# The nodes run as a non-root user: the invoking user, or 10001 when that is root (the
# directories are then handed to 10001).
uid=$(id -u)
gid=$(id -g)
run_uid=$uid
run_gid=$gid
if [ "$uid" = 0 ]; then
    run_uid=10001
    run_gid=10001
fi
medchain() { # medchain ARGS... in DIR/$where, as the invoking user
    docker run --rm --network none --user "$uid:$gid" -v "$dir:/work" -w "/work/$where" \
        "$image" "$@"
}

# Each hospital: its key, in its own directory; only the public key leaves it.
declare -A pubkey
for m in "${members[@]}"; do
    mkdir -p "$dir/$m/data"
    pubkey[$m]=$(where=$m medchain keygen --out node.json)
done
mkdir -p "$dir/admin"
admin=$(where=admin medchain keygen --out admin.json)

# The coordinator: public data only.
where=.
medchain genesis new --chain-id compose-consortium --engine "$engine" >/dev/null
for m in "${members[@]}"; do
    medchain genesis add-validator --pubkey "${pubkey[$m]}" --p2p "$m:7700" \
        --api "http://$m:8700" --name "$m" >/dev/null
done
medchain genesis add-admin --pubkey "$admin" >/dev/null
hash=$(medchain genesis hash)

for m in "${members[@]}"; do
    cp "$dir/genesis.toml" "$dir/$m/genesis.toml"
    cat >"$dir/$m/node.toml" <<TOML
[node]
data_dir = "/node/data"
key_file = "/node/node.json"
genesis = "/node/genesis.toml"

[network]
listen = "0.0.0.0:7700"

[api]
listen = "0.0.0.0:8700"

[log]
format = "json"
TOML
    chmod 0700 "$dir/$m"
done
if [ "$uid" = 0 ]; then
    chown -R "$run_uid:$run_gid" "${members[@]/#/$dir/}"
fi

settings="MEDCHAIN_DIR=$dir
MEDCHAIN_UID=$run_uid
MEDCHAIN_GID=$run_gid
MEDCHAIN_IMAGE=$image"
if [ "$dir" = "$here/members" ]; then
    printf '%s\n' "$settings" >"$here/.env"
    echo "consortium: settings in $here/.env"
else
    echo "consortium: export these before docker-compose:"
    printf '  export %s\n' $settings
fi
echo "consortium: $engine, 4 hospitals in $dir; genesis hash $hash"
echo "consortium: the administrator's key is $dir/admin/admin.json"
