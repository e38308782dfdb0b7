#!/usr/bin/env bash
# The GPU checks of issue 14 as one call of the device tool (a GPU machine some sessions are lent; it has torch,
# transformers and pytest but reaches no network, and its transformers may be older than ours):
#
#   here, once:   bash scripts/device_check.sh --wheels   # our transformers / huggingface_hub wheels into .whl/
#   device tool:  run(command="bash scripts/device_check.sh", carry=[".whl"], timeout_s=540)
#   here, dry:    bash scripts/device_check.sh --tiny      # the same steps on the tiny models, on this CPU
#   device tool:  run(command="bash scripts/device_check.sh --cpu", carry=[".whl"], timeout_s=460)
#                 # that machine's CPU alone (an Intel Xeon with AMX): batching, the int8 kernels, OpenMP spinning
#
# On the device it installs the carried wheels, runs the CUDA tests (pytest -m gpu: generation in half
# precision, top-p on CUDA) and bench/chat_decode.py on the GPU (plain generate in ModelDeck's dtype against
# ModelDeck's path, and that dtype's numeric cost against float32), and writes every log under $OUT, which the
# device tool brings back; then bench/long_prompt.py on the GPU (how large a GPU's prefill chunks should be).
# Run on an H200 on 2026-11-30 (bench/README.md, sixth session), before long_prompt.py existed.
set -uo pipefail
cd "$(dirname "$0")/.."
# huggingface_hub 2.x imports httpx2 (with httpcore2 and truststore), which the GPU image lacks; transformers
# checks regex's version at import.
WHEELS=(transformers==5.24.0 huggingface_hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 regex==2026.5.9)

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
        || { echo "the carried wheels did not install"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MODELDECK_BENCH_CACHE="${MODELDECK_BENCH_CACHE:-/tmp/bench-cache}"
status=0
# The CPU benchmarks run on 2 of that machine's CPUs, like a free Space.
PIN=(); command -v taskset > /dev/null && PIN=(taskset -c 0,1)
{ grep -m1 "model name" /proc/cpuinfo; grep -o -w -m1 -E "amx_int8|avx512_vnni|avx_vnni|avx512_bf16" /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } \
    | tee "$OUT/cpu.txt"
if [[ "${1:-}" == "--cpu" ]]; then  # that machine's CPU alone, 2 threads: batching, the int8 kernels, OpenMP spinning
    export MODELDECK_DEVICE=cpu OMP_NUM_THREADS=2
    TINY=(); [[ "${2:-}" == "--tiny" ]] && TINY=(--tiny)  # a dry run here
    timeout 150 "${PIN[@]}" python3 bench/concurrent_chats.py "${TINY[@]}" --repeats 1 2>&1 | grep -v "it/s\]" \
        | tee "$OUT/concurrent_cpu.log"
    timeout 200 "${PIN[@]}" python3 bench/int8_variants.py "${TINY[@]}" --repeats 1 --only 4,5,9 2>&1 | grep -v "it/s\]" \
        | grep -v -i "warn\|forward_call" | tee "$OUT/int8_variants_cpu.log"
    for spin in 30000000 default; do
        env $([[ $spin == default ]] || echo GOMP_SPINCOUNT=$spin) timeout 110 "${PIN[@]}" python3 bench/chat_decode.py \
            "${TINY[@]}" --repeats 1 2>&1 | grep -v "it/s\]" | tee "$OUT/chat_decode_cpu_spin_$spin.log"
    done
    exit 0
fi
{
    python3 -c "import torch, transformers; print('torch', torch.__version__, '· transformers', transformers.__version__,
'· GPU', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
} 2>&1 | tee "$OUT/versions.txt"
python3 -m pytest -q -m gpu tests/test_streaming.py tests/test_sampling.py 2>&1 | tee "$OUT/gpu_tests.log" || status=1
python3 bench/chat_decode.py "${BENCH[@]}" 2>&1 | grep -v "it/s\]" | tee "$OUT/chat_decode.log" || status=1
# A chat streaming while a 2000-token prompt arrives: read in one pass, 256 tokens a pass, 2048 (the GPU default).
timeout 240 python3 bench/long_prompt.py "${BENCH[@]}" 2>&1 | grep -v "it/s\]" | tee "$OUT/long_prompt.log" || status=1
# The same benchmark on that machine's own CPU, held to 2 threads like a free Space: another kind of CPU than ours
# (an Intel Xeon has AMX), so int8's kernel self-test and speed are seen on it too.
MODELDECK_DEVICE=cpu OMP_NUM_THREADS=2 timeout 240 "${PIN[@]}" python3 bench/chat_decode.py "${BENCH[@]}" 2>&1 \
    | grep -v "it/s\]" | tee "$OUT/chat_decode_cpu.log" || status=1
# The inference layer's own tests (those that need no gradio) with their models on the GPU: a look, not a gate.
MODELDECK_TEST_DEVICE=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_batching.py \
    tests/test_streaming.py tests/test_sampling.py tests/test_next_token.py tests/test_prefix_cache.py \
    tests/test_kv_cache.py tests/test_chunked_prefill.py 2>&1 | tail -60 > "$OUT/cuda_suite.log"; tail -3 "$OUT/cuda_suite.log"
echo "logs in $OUT; exit $status"
exit $status
