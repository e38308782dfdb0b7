"""The about / status panel: device, dtype, loaded models and their memory, versions."""

from __future__ import annotations

import importlib.metadata
import platform

import gradio as gr

from pipelines import device_and_dtype_names, loaded_models, registry

from .common import t

PACKAGES = ("gradio", "transformers", "torch", "huggingface_hub", "tokenizers", "gTTS")


def status_markdown() -> str:
    """Describe the device, the configured and loaded models, and the library versions."""
    try:
        device, dtype = device_and_dtype_names()
    except Exception as exc:  # a bad MODELDECK_DEVICE is shown, not raised, on the status page
        device, dtype = f"⚠️ {exc}", "?"
    lines = [f"**设备 Device:** `{device}` · **精度 dtype:** `{dtype}`", "",
             "| 角色 Role | 模型 Model | 来源 Source |", "|---|---|---|"]
    for role in registry.ROLES:
        for spec in registry.specs(role):
            lines.append(f"| {role} | {spec.name} | `{spec.source}`{'@' + spec.revision if spec.revision else ''} |")
    loaded = loaded_models()
    lines += ["", f"**已加载 Loaded ({len(loaded)})** — 模型在第一次使用时加载 / models load on first use", ""]
    if loaded:
        lines += ["| 模型 Model | 角色 Roles | 设备 Device | dtype | 内存 Memory (MiB) | 加载 Load (s) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m['name']} | {', '.join(m['roles'])} | {m['device']} | {m['dtype']} | {m['memory_mib']} | "
                  f"{m['load_seconds']} |" for m in loaded]
        lines.append(f"\n**合计 Total:** {sum(m['memory_mib'] for m in loaded):.1f} MiB")
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} —")
    lines += ["", f"**版本 Versions:** Python {platform.python_version()} · " + " · ".join(versions)]
    return "\n".join(lines)


def build() -> gr.Markdown:
    """Lay out the status panel; return the Markdown the app refreshes on load."""
    panel = gr.Markdown(elem_id="about-status")
    refresh = gr.Button(t("md_refresh"), elem_id="about-refresh")
    refresh.click(status_markdown, None, panel, api_visibility="private", queue=False)
    return panel
