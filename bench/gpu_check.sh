#!/usr/bin/env bash
# The CUDA checks for a lent GPU machine: the CUDA parity tests of every meqg kernel and
# bench/kernels.py on the GPU. MLX's CUDA wheel must be importable first (on the lent
# machines: unpacked to /tmp/site and on PYTHONPATH). Fails loudly when MLX has no CUDA.
#
#     bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
names=$(mktemp -d)  # the import names `pip install -e .` would map (meqg_mlx, meqg_metal)
ln -s "$PWD/meqg_mlx" "$names/meqg_mlx"
ln -s "$PWD/metal" "$names/meqg_metal"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$names" HF_HUB_OFFLINE=1
python3 -c "import mlx.core as mx; assert mx.cuda.is_available(), 'MLX has no CUDA backend here'; print(mx.__version__, mx.default_device())"
python3 -m pytest -q -rs -p no:cacheprovider -m gpu tests/kernels
python3 bench/kernels.py --device gpu --rounds 5
