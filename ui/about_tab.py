"""The about / status panel: device, dtype, loaded models and their memory, versions."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import gradio as gr

from pipelines import PipelineError, backends, device_and_dtype_names, loaded_models, registry
from pipelines.devices import processor, quantization
from pipelines.speech import engines_markdown

from .common import t

if TYPE_CHECKING:
    from pipelines.int8_kernels import KernelChoice  # imports torch: for the type only

PACKAGES = ("gradio", "transformers", "torch", "huggingface_hub", "tokenizers", "gTTS")
PROBE_SECONDS = 2.0  # how long the status tab waits for a remote server


def _last_call(record: backends.remote.CallRecord) -> str:
    if not record.started:
        return "—"
    if record.error:
        return f"❌ {record.error[:120]}"
    parts = []
    if record.first_token_s is not None:
        parts.append(f"{record.first_token_s:.2f} s 首词元 first token")
    if record.total_s is not None:
        parts.append(f"{record.total_s:.2f} s 共 total")
    return " · ".join(parts) or "…"


def remote_markdown() -> list[str]:
    """One row per remote backend: URL (never a key), served model, reachable now, the last call's latency."""
    targets = backends.remote_targets()
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        reachable = list(pool.map(lambda target: target[2].probe(PROBE_SECONDS), targets))
    lines = ["", "**远程后端 Remote backends**", "",
             "| 角色 Role | 名称 Name | 地址 URL | 服务端模型 Served model | 可达 Reachable | 上次调用 Last call |",
             "|---|---|---|---|---|---|"]
    for (role, spec, remote), ok in zip(targets, reachable):
        lines.append(f"| {role} | {spec.name} | `{remote.shown}` | `{remote.model or '—'}` | "
                     f"{'✅ 可达 reachable' if ok else '❌ 不可达 unreachable'} | {_last_call(remote.record)} |")
    return lines


def _timed(micros: dict[str, float]) -> str:
    return ", ".join(f"{name} {us:.0f} µs" for name, us in sorted(micros.items(), key=lambda item: item[1]))


def _choice(choice: "KernelChoice") -> str:
    shape = f"{choice.out_features}×{choice.in_features}"
    if choice.reason == "setting":
        line = f"{shape} → **{choice.name}** (MODELDECK_INT8_KERNEL)"
    elif choice.reason == "only exact":
        left = "; ".join(f"{name}: {why}" for name, why in choice.rejected.items())
        line = f"{shape} → **{choice.name}** (唯一可用 the only one usable{': ' + left if left else ''})"
    elif choice.prompt_micros:
        line = (f"{shape} → **{choice.name}** (自检 self-test, 解码 decode steps: {_timed(choice.micros)}; "
                f"提示词 prompts: {_timed(choice.prompt_micros)})")
    else:
        line = f"{shape} → **{choice.name}** (自检 self-test: {_timed(choice.micros)})"
    if choice.prompt_name and choice.prompt_name != choice.name:
        why = " (MODELDECK_INT8_PROMPT_KERNEL)" if choice.prompt_reason == "setting" else ""
        line += f"; 读提示词 reading prompts → **{choice.prompt_name}**{why}"
    return line


def processor_markdown(device: str, dtype: str) -> list[str]:
    """The processor, its vector extensions, int8's activation width, and each int8 kernel choice with its timings."""
    cpu = processor()
    threads = f" · torch {cpu['threads']} 线程 threads" if cpu["threads"] else ""
    has = " · ".join(cpu["has"]) or "—"
    lacks = f" (无 no {', '.join(cpu['lacks'])})" if cpu["lacks"] else ""
    bits = cpu["activation_bits"]
    why = ("AVX-512 VNNI: 32 位精确累加 exact 32-bit sums" if bits == 8
           else "无 AVX-512 VNNI: 16 位累加不溢出 no overflow in 16-bit sums")
    kernels_module = sys.modules.get("pipelines.int8_kernels")  # imports torch: only once an int8 model loaded
    made = kernels_module.choices() if kernels_module is not None else []
    kernels = (" · ".join(_choice(c) for c in made) if made
               else "第一个 int8 模型加载时自检 chosen by a self-test when the first int8 model loads")
    try:
        used = bool(made) or quantization(device, dtype) == "int8"
    except PipelineError:  # a bad MODELDECK_QUANTIZE: the models' own loading says so
        used = False
    int8 = (f"{bits} 位激活 {bits}-bit activations ({why}) · 内核 kernel: {kernels}" if used
            else f"不使用 not used (`{device}`, `{dtype}`, MODELDECK_QUANTIZE)")
    return [f"**处理器 Processor:** `{cpu['name']}` · {cpu['cpus']} 个逻辑核 logical CPUs{threads} · {has}{lacks}", "",
            f"**int8:** {int8}", ""]


def status_markdown() -> str:
    """Describe the device, the configured and loaded models, and the library versions."""
    try:
        device, dtype = device_and_dtype_names()
    except Exception as exc:  # a bad MODELDECK_DEVICE is shown, not raised, on the status page
        device, dtype = f"⚠️ {exc}", "?"
    lines = [f"**设备 Device:** `{device}` · **精度 dtype:** `{dtype}`", "", *processor_markdown(device, dtype),
             "| 角色 Role | 模型 Model | 来源 Source |", "|---|---|---|"]
    for role in registry.ROLES:
        for spec in registry.specs(role):
            where = (f"{spec.entry.scheme}: `{backends.remote_for(spec).shown}`" if spec.is_remote and spec.entry
                     else f"`{spec.source}`{'@' + spec.revision if spec.revision else ''}")
            lines.append(f"| {role} | {spec.name} | {where} |")
    lines += remote_markdown()
    loaded = loaded_models()
    lines += ["", f"**已加载 Loaded ({len(loaded)})** — 模型在第一次使用时加载 / models load on first use", ""]
    if loaded:
        lines += ["| 模型 Model | 角色 Roles | 设备 Device | dtype | 注意力 Attention | 内存 Memory (MiB) | 加载 Load (s) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {m['name']} | {', '.join(m['roles'])} | {m['device']} | {m['dtype']}"
                  f"{' (' + ', '.join(m['int8_kernels']) + ')' if m['int8_kernels'] else ''} | "
                  f"{m['attention'] or '—'}{' · 精简解码 lean decode' if m['lean_decode'] else ''} | "
                  f"{m['memory_mib']} | {m['load_seconds']} |" for m in loaded]
        lines.append(f"\n**合计 Total:** {sum(m['memory_mib'] for m in loaded):.1f} MiB")
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} —")
    lines += ["", engines_markdown()]
    lines += ["", f"**版本 Versions:** Python {platform.python_version()} · " + " · ".join(versions)]
    return "\n".join(lines)


def build() -> gr.Markdown:
    """Lay out the status panel; return the Markdown the app refreshes on load."""
    panel = gr.Markdown(elem_id="about-status")
    refresh = gr.Button(t("md_refresh"), elem_id="about-refresh")
    refresh.click(status_markdown, None, panel, api_visibility="private", queue=False)
    return panel
