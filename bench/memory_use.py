"""Memory: resident memory of a process with every model loaded once (the story model shares the chat
model), float32 versus ModelDeck's default (int8 language models and classifiers on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _common import machine, ROOT, parser, real_size_env, table, tiny_env

CHILD = """
import json, os, psutil, sys
sys.path.insert(0, {root!r})
before = psutil.Process().memory_info().rss
import pipelines
from pipelines import registry
problems = pipelines.preload("all")
assert not problems, problems
import torch
for loaded in registry._cache.values():  # weights are memory-mapped: read every page, as inference would
    for tensor in list(loaded.model.parameters()) + list(loaded.model.buffers()):
        if tensor.dtype.is_floating_point:
            tensor.float().sum()
rows = registry.loaded_models()
print(json.dumps({{"rss": psutil.Process().memory_info().rss, "base": before,
                   "weights": sum(r["memory_mib"] for r in rows), "models": len(rows),
                   "story_shares_chat": registry.resolve("story").key == registry.resolve("chat").key}}))
"""


def measure(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT))], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parser(__doc__).parse_args()
    env = {**os.environ, **(tiny_env() if args.tiny else real_size_env())}
    rows = []
    for label, setting in (("float32", "none"), ("ModelDeck default (int8 LMs and classifiers)", "int8")):
        m = measure({**env, "MODELDECK_QUANTIZE": setting})
        rows.append([label, m["models"], round(m["weights"]), round(m["rss"] / 2**20), m["story_shares_chat"]])
    print(f"models: {'tiny' if args.tiny else 'default-model sizes, random weights'}; one process each")
    print(machine())
    print(table(["weights", "models loaded", "weights (MiB)", "resident memory (MiB)", "story shares chat"], rows))
    print(f"\nresident memory, int8 / float32: {rows[1][3] / rows[0][3]:.2f}")


if __name__ == "__main__":
    main()
