#!/bin/bash
# The learned graph's checks for a lent GPU machine, in one run (issue 18, acceptance 4): the full learned graph's
# rate in one process and as a pipeline (benchmarks/learned_graph.py, fp32 and fp16), `perception3d bench learned`
# and `perception3d bench detector2d` with their CUDA rows, and optionally the same graph run from an older checkout
# back to back. Everything lands in $OUT/results.tgz (the device tool brings back few files), the log in $OUT/log.
#
#   benchmarks/gpu_checks.sh [OLD_CHECKOUT]      # from the repository root; OUT defaults to /tmp/gpu_checks,
#                                                # PYTHON to python3, PRECISION to "fp32 fp16"
#
# A GPU machine without network access needs the package's requirements that its image lacks as wheels in .whl/
# (git-ignored), fetched where pip works with `pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 ...`: rosbags, mcap, lz4, zstandard, ruamel.yaml, jsonschema and what they need
# (apsw, backports.zstd, jsonschema-specifications, referencing, rpds-py); they are installed into a scratch folder.
set -u
OUT=${OUT:-/tmp/gpu_checks}
OLD=${1:-}
PY=${PYTHON:-python3}  # the device image's python3 holds torch
PRECISION=${PRECISION:-fp32 fp16}  # fp16 needs CUDA
WORK=$(mktemp -d)
mkdir -p "$OUT/results"
exec > >(tee "$OUT/log") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        .whl/*.whl || exit 1
    SITE="$WORK/site:"
else
    SITE=""
fi
export PYTHONUNBUFFERED=1
run() {  # run CHECKOUT ARGS...: python3 with CHECKOUT's package first on the path
    local checkout=$1
    shift
    PYTHONPATH="$checkout/src:$SITE${PYTHONPATH:-}" "$PY" "$@"
}
date -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
run . -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)"
run . -m perception3d.cli synth --out "$WORK/world" --scenes 1 --seconds 1.2 --seed 5 >/dev/null 2>&1 || exit 1
run . -m perception3d.cli convert --dataroot "$WORK/world" --version v1.0-synth --out "$WORK/bags" >/dev/null 2>&1 \
    || exit 1
BAG="$WORK/bags/scene-synth-0001"
for processes in 1 3; do
    run . benchmarks/learned_graph.py "$BAG" --rounds 2 --processes $processes --precision $PRECISION \
        --out "$OUT/results/graph_$processes"
done
if [ -n "$OLD" ]; then
    run "$OLD" "$OLD/benchmarks/learned_graph.py" "$BAG" --rounds 2 --precision $PRECISION \
        --out "$OUT/results/graph_old"
fi
run . -m perception3d.cli bench learned --out "$OUT/results/bench"
run . -m perception3d.cli bench detector2d --out "$OUT/results/bench"
date -u
tar -czf "$OUT/results.tgz" -C "$OUT" results
