#!/usr/bin/env bash
# The GPU checks of issue 14 as one call of the device tool (a GPU machine some sessions are lent; it has torch,
# transformers and pytest but reaches no network, and its transformers may be older than ours):
#
#   here, once:   bash scripts/device_check.sh --wheels   # our transformers / huggingface_hub wheels into .whl/
#   device tool:  run(command="bash scripts/device_check.sh", carry=[".whl"], timeout_s=540)
#   here, dry:    bash scripts/device_check.sh --tiny      # the same steps on the tiny models, on this CPU
#
# On the device it installs the carried wheels, runs the CUDA tests (pytest -m gpu: generation in half
# precision, top-p on CUDA) and bench/chat_decode.py on the GPU (plain generate in ModelDeck's dtype against
# ModelDeck's path, and that dtype's numeric cost against float32), and writes every log under $OUT, which the
# device tool brings back. Not yet run on a GPU: no session of this work was lent one.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(transformers==5.24.0 huggingface_hub==2.4.0)

if [[ "${1:-}" == "--wheels" ]]; then
    mkdir -p .whl
    grep -qxF "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    exec python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
fi

OUT="${OUT:-$(mktemp -d)}"
BENCH=(--repeats 3)
if [[ "${1:-}" == "--tiny" ]]; then
    BENCH=(--tiny --repeats 2)
fi
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MODELDECK_BENCH_CACHE="${MODELDECK_BENCH_CACHE:-/tmp/bench-cache}"
status=0
{
    python3 -c "import torch, transformers; print('torch', torch.__version__, '· transformers', transformers.__version__,
'· GPU', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
} 2>&1 | tee "$OUT/versions.txt"
python3 -m pytest -q -m gpu tests/test_streaming.py tests/test_sampling.py 2>&1 | tee "$OUT/gpu_tests.log" || status=1
python3 bench/chat_decode.py "${BENCH[@]}" 2>&1 | grep -v "it/s\]" | tee "$OUT/chat_decode.log" || status=1
echo "logs in $OUT; exit $status"
exit $status
