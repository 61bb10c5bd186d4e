#!/usr/bin/env bash
# Quick start: install packages, build the release preset, and train the
# default small model on the shipped Austen corpus into runs/austen-small,
# as 2 MPI ranks on this machine.
#
#   scripts/train.sh [extra cllm train options...]
#
# Extra options are passed on to `cllm train` (e.g. --steps 200 --threads 4).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh build
scripts/build.sh release
# Two MPI ranks, the cores split between them (jobs/local.sh).
exec jobs/local.sh -n 2 -- train --preset small --data data/austen.txt --out runs/austen-small "$@"
