#!/usr/bin/env bash
# Regenerate the pinned dependency files from pyproject.toml (README, "Locked dependencies"):
#   requirements/lock.txt      the runtime dependencies and the dev and ray extras, with torch 2.14.1 / torchvision 0.29.1
#   requirements/lock-gpu.txt  the same plus the gpu extra (faiss-gpu-cu12)
# For Linux x86_64 and Python 3.11, the platform of CI and the Docker image: run it on such a machine.
# pip-tools runs from a throw-away virtualenv, so the project's own environment is untouched.
# Usage: scripts/lock.sh [--upgrade]      (without --upgrade, versions already in the lock are kept)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIP_TOOLS=pip-tools==7.6.2
PYTHON=${PYTHON:-python3.11}

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "lock.sh: needs Python 3.11 (set PYTHON=...)" >&2; exit 2; }
TOOLS=$(mktemp -d /tmp/modalrec-lock.XXXXXX)
trap 'rm -rf "$TOOLS"' EXIT
"$PYTHON" -m venv "$TOOLS"
"$TOOLS/bin/pip" install --quiet "$PIP_TOOLS"

cd "$REPO"
export CUSTOM_COMPILE_COMMAND=scripts/lock.sh  # the command the files' header names
compile() {
    local out=$1
    shift
    # --strip-extras: pip refuses extras in a constraint file (`pip install -c`); --allow-unsafe pins setuptools.
    "$TOOLS/bin/pip-compile" --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
        --resolver=backtracking "$@" --output-file "$out" pyproject.toml requirements/torch.in
}
compile requirements/lock.txt --extra dev --extra ray "${@}"
compile requirements/lock-gpu.txt --extra dev --extra ray --extra gpu "${@}"
echo "lock.sh: wrote requirements/lock.txt and requirements/lock-gpu.txt" >&2
