#!/usr/bin/env bash
# Smoke test of the Docker image (README "Docker"): build it, run the bundled sample through `mmprep build`
# and a 2-epoch `mmtrain run` in containers, and check what they wrote to the mounted output volume.
#
# Usage: scripts/docker-smoke.sh [OUT_DIR]      (OUT_DIR: empty or new; default a fresh temporary directory)
# Environment:
#   BASE_IMAGE  build argument of the Dockerfile [local/base]; local/base is made with debootstrap when missing
#   IMAGE       tag of the image built [modalrec:smoke]
#   GPUS        `docker run --gpus` value, or none [all when nvidia-smi works, else none]
# Without a running Docker engine, as root it installs docker.io (apt) and starts dockerd for the run.
# Prints the seconds of each step; exits non-zero on the first failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_IMAGE=${BASE_IMAGE:-local/base}
IMAGE=${IMAGE:-modalrec:smoke}
OUT=${1:-$(mktemp -d /tmp/modalrec-smoke.XXXXXX)}
DOCKERD_PID=

log() { printf '[docker-smoke] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
    if [[ -n $DOCKERD_PID ]]; then
        log "stopping the dockerd this script started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

apt_install() {
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install $*"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_docker() {
    if docker info >/dev/null 2>&1; then return; fi
    command -v dockerd >/dev/null || apt_install docker.io
    log "starting dockerd (log /tmp/dockerd.log)"
    dockerd >/tmp/dockerd.log 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    die "dockerd did not start (see /tmp/dockerd.log)"
}

ensure_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
    [[ $BASE_IMAGE == local/base ]] || die "base image $BASE_IMAGE is not present (image registries are not used here)"
    command -v debootstrap >/dev/null || apt_install debootstrap
    local rootfs
    rootfs=$(mktemp -d /tmp/modalrec-rootfs.XXXXXX)
    log "making $BASE_IMAGE with debootstrap (Debian bookworm, minbase)"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/tmp/debootstrap.log 2>&1 \
        || die "debootstrap failed (see /tmp/debootstrap.log)"
    # Behind a TLS-intercepting proxy the host trusts extra CAs: the base trusts them too, and so does pip in
    # the build (it reads /etc/pip.conf; the CA bundle is made when the Dockerfile installs ca-certificates).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$rootfs/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    fi
    tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

git_commit() {
    local commit
    commit=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null) || { echo unknown; return; }
    [[ -z $(git -C "$REPO" status --porcelain 2>/dev/null) ]] || commit+=-dirty
    echo "$commit"
}

T_START=$(now)
ensure_docker
ensure_base
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[[ -z $(ls -A "$OUT") ]] || die "$OUT is not empty"

# The commands of README "Docker". As root, the containers run as an unprivileged uid that has no account in
# the image, the case of `--user "$(id -u):$(id -g)"` for any user.
if [[ $(id -u) -eq 0 ]]; then
    RUN_AS=4321:4321
    chown "$RUN_AS" "$OUT"
else
    RUN_AS="$(id -u):$(id -g)"
fi
GPU_ARGS=()
GPUS=${GPUS:-$(nvidia-smi >/dev/null 2>&1 && echo all || echo none)}
[[ $GPUS == none ]] || GPU_ARGS=(--gpus "$GPUS")
RUN=(docker run --rm --init --user "$RUN_AS" "${GPU_ARGS[@]}" -v "$REPO/data:/data:ro" -v "$OUT:/out" "$IMAGE")

log "building $IMAGE on $BASE_IMAGE"
t=$(now)
docker build --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg IMAGE_TAG="$IMAGE" \
    --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" --build-arg GIT_COMMIT="$(git_commit)" \
    -t "$IMAGE" "$REPO" >/tmp/docker-smoke-build.log 2>&1 || die "docker build failed (see /tmp/docker-smoke-build.log)"
T_BUILD=$(elapsed "$t")
log "build: $T_BUILD s; image $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.2f GB", $1 / 1e9 }')"

[[ $(docker run --rm "$IMAGE" id -un) == modalrec ]] || die "the image's default user is not modalrec"
docker run --rm "$IMAGE" python -c "import faiss, torch; print('faiss', faiss.__version__, 'gpu build:', hasattr(faiss, 'StandardGpuResources'), '| torch', torch.__version__, 'cuda', torch.version.cuda, 'available:', torch.cuda.is_available())" \
    || die "faiss / torch do not import in the image"

t=$(now)
"${RUN[@]}" mmprep build --dataset all-beauty --raw-dir /data --out /out/all-beauty || die "mmprep build failed"
T_PREP=$(elapsed "$t")
log "mmprep build: $T_PREP s"
"${RUN[@]}" mmprep verify /out/all-beauty || die "mmprep verify failed"

t=$(now)
"${RUN[@]}" mmtrain run --model lightgcn --dataset /out/all-beauty --out /out/runs --name lightgcn-smoke \
    --set epochs=2 --seed 1 >"$OUT/final-stdout.json" || die "mmtrain run failed"
T_TRAIN=$(elapsed "$t")
log "mmtrain run: $T_TRAIN s"

[[ -f $OUT/all-beauty/manifest.json ]] || die "no manifest.json on the mounted volume ($OUT/all-beauty)"
[[ -f $OUT/runs/lightgcn-smoke/final.json ]] || die "no final.json on the mounted volume ($OUT/runs/lightgcn-smoke)"
docker run --rm -i --user "$RUN_AS" -v "$OUT:/out:ro" "$IMAGE" python - <<'EOF' || die "output checks failed"
import json, os
from pathlib import Path

image = os.environ["MODALREC_IMAGE"]
manifest = json.loads(Path("/out/all-beauty/manifest.json").read_text())
counts = manifest["counts"]
got = (counts["users"], counts["items"], counts["interactions"])
assert got == (137, 24, 686), f"dataset counts {got}, expected (137, 24, 686)"
assert manifest["created_by"].get("image") == image, f"manifest created_by.image: {manifest['created_by']}"
run = Path("/out/runs/lightgcn-smoke")
final = json.loads((run / "final.json").read_text())
assert final == json.loads(Path("/out/final-stdout.json").read_text()), "final.json differs from stdout"
assert final["epochs_run"] == 2 and final["test"]["n_users"] == 137, f"final.json: {final}"
versions = json.loads((run / "versions.json").read_text())
assert versions.get("image") == image, f"versions.json has no image {image!r}: {versions}"
assert versions["torch"] == "2.14.1+cu130", versions["torch"]
print(f"ok: dataset 137 users / 24 items / 686 interactions; run {run.name}: epochs 2, test recall@20 "
      f"{final['test']['recall@20']:.4f} on {versions['device']}; image {image}")
EOF

log "timings (s): build $T_BUILD, mmprep build $T_PREP, mmtrain run $T_TRAIN, total $(elapsed "$T_START")"
log "PASS (outputs in $OUT)"
