#!/usr/bin/env bash
# Quick start: install packages, build the release preset, prepare the
# shipped Austen corpus as an HDF5 dataset (data/austen.h5, byte-level
# tokens), and train the default small model on it into runs/austen-small as
# 2 MPI ranks on this machine. Run it again and it continues from the newest
# checkpoint (or says the run is complete).
#
#   scripts/train.sh [extra cllm train options...]
#
# Extra options are passed on to `cllm train` (e.g. --steps 200 --threads 4).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh build
scripts/build.sh release
if [[ ! data/austen.h5 -nt data/austen.txt ]]; then
  build/release/cllm prepare data/austen.txt --out data/austen.h5
fi
# Two MPI ranks, the cores split between them (jobs/local.sh).
exec jobs/local.sh -n 2 -- train --preset small --data data/austen.h5 --out runs/austen-small "$@"
