"""The chat model's weight formats and int8 kernels side by side: prefill and decode speed of the bare
model, and what each lossy format costs against float32 on the same prompts (top-1 token agreement and
relative logit error at every prompt position). The candidates: float32, bfloat16, ModelDeck's int8
(per-token activation scales, fbgemm) with per-channel or per-tensor weight scales, with or without the
152k-row output layer, and the other kernels tried: torch's dynamic int8 (one activation scale per
input: ModelDeck before), weight-only int8 with bfloat16 activations (``torch._weight_int8pack_mm``), and
weight-only int4 in groups of 128 with bfloat16 activations (``torch._weight_int4pack_mm_for_cpu``).
ModelDeck's int8 runs on fbgemm, oneDNN's ``torch._int_mm`` or oneDNN's packed int8 primitive, whichever its
self-test finds faster here for decode steps, and may pack the weights a second time for a kernel faster at
reading prompts (``pipelines/int8_kernels.py``); each is listed, the step/prompt pair too, and the q/k/v and
gate/up products separately as before."""

from __future__ import annotations

import os
import statistics
import time

from _common import int8_choices, machine, parser, qwen_real_size, table, tiny_env

VARIANTS = [  # (label, dtype, int8 settings or None; "kernel" picks one of the other kernels tried)
    ("float32", "float32", None),
    ("bfloat16", "bfloat16", None),
    ("int8 per-token, per-channel weights, every layer (ModelDeck default: the self-test's kernel)", "float32", {}),
    ("int8 per-token, fbgemm, q/k/v and gate/up as separate products (before)", "float32",
     {"setting": "fbgemm", "separate": True}),
    ("int8 per-token via fbgemm (MODELDECK_INT8_KERNEL=fbgemm)", "float32", {"setting": "fbgemm"}),
    ("int8 per-token via torch._int_mm (oneDNN; MODELDECK_INT8_KERNEL=onednn)", "float32", {"setting": "onednn"}),
    ("int8 per-token, per-tensor weights", "float32", {"per_channel": False}),
    ("int8 per-token, float32 output layer", "float32", {"include_lm_head": False}),
    ("torch dynamic int8, one activation scale per input (ModelDeck before)", "float32", {"kernel": "dynamic"}),
    ("weight-only int8, bfloat16 activations (_weight_int8pack_mm)", "float32", {"kernel": "int8pack_bf16"}),
    ("weight-only int4, groups of 128, bfloat16 activations (_weight_int4pack_mm_for_cpu)", "float32",
     {"kernel": "int4pack_bf16"}),
    ("int8 per-token via oneDNN's packed int8 primitive (MODELDECK_INT8_KERNEL=onednn_packed)", "float32",
     {"setting": "onednn_packed"}),
    ("int8 per-token, fbgemm for steps + oneDNN packed for prompts (MODELDECK_INT8_PROMPT_KERNEL=onednn_packed)",
     "float32", {"setting": "fbgemm", "prompt_setting": "onednn_packed"}),
]
INT4_GROUP = 128  # input columns sharing one int4 scale and offset (torchao's default for int4 weight-only)


def modeldeck_int8(model, setting: str | None = None, separate: bool = False, prompt_setting: str | None = None,
                   **options):
    """``quantize_int8`` with ``MODELDECK_INT8_KERNEL=setting`` (and ``_PROMPT_KERNEL=prompt_setting``) and, if
    ``separate``, no shared products."""
    from unittest import mock

    import pipelines.quantize as quantize

    env = ({"MODELDECK_INT8_KERNEL": setting} if setting else {}) | (
        {"MODELDECK_INT8_PROMPT_KERNEL": prompt_setting} if prompt_setting else {})
    with mock.patch.dict(os.environ, env), mock.patch.object(quantize, "SIBLINGS", () if separate else
                                                             quantize.SIBLINGS):
        return quantize.quantize_int8(model, **options)


def other_kernel(model, kernel: str):
    """Replace every ``nn.Linear`` of ``model`` by one of the kernels tried and not chosen."""
    import warnings

    import torch

    if kernel.startswith("torchao"):  # torchao's own int8 layouts, where it is installed (--others)
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

        config = Int8WeightOnlyConfig() if kernel == "torchao weight-only" else Int8DynamicActivationInt8WeightConfig()
        quantize_(model, config)
        return model
    if kernel == "compiled":  # ModelDeck's int8 under torch.compile (--others)
        return torch.compile(modeldeck_int8(model), dynamic=True)
    if kernel == "dynamic":
        from pipelines.quantize import _untie_output_layer

        _untie_output_layer(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                    inplace=True)

    class WeightOnly(torch.nn.Module):
        """A float32-in, float32-out drop-in for ``nn.Linear``; ``product`` multiplies bfloat16 rows."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.bias = None if linear.bias is None else linear.bias.detach().float()

        def forward(self, x):
            out = self.product(x.reshape(-1, x.shape[-1]).to(torch.bfloat16)).float()
            out = out if self.bias is None else out + self.bias
            return out.reshape(*x.shape[:-1], out.shape[-1])

    class Int8WeightOnly(WeightOnly):
        """Symmetric int8 weights, one scale per output row."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__(linear)
            w = linear.weight.detach().float()
            scale = (w.abs().amax(1) / 127).clamp(min=1e-12)
            self.w8 = (w / scale[:, None]).round().to(torch.int8)
            self.scale = scale.to(torch.bfloat16)

        def product(self, rows):
            return torch._weight_int8pack_mm(rows, self.w8, self.scale)

    class Int4WeightOnly(WeightOnly):
        """Asymmetric int4 weights, a scale and an offset per group of INT4_GROUP inputs (torchao's layout)."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__(linear)
            w = linear.weight.detach().float()
            rows, columns = w.shape
            self.group = INT4_GROUP if columns % INT4_GROUP == 0 else 32  # 32: the tiny test model's widths
            groups = w.view(rows, columns // self.group, self.group)
            low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
            scale = ((high - low) / 15).clamp(min=1e-12)
            q = ((groups - low) / scale).round().clamp(0, 15).to(torch.int32).view(rows, columns)
            self.packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
            # The kernel computes (q - 8) * scale + offset: the offset is the group's low end plus 8 steps.
            self.scale_offset = torch.stack([scale.view(rows, -1).t(), (low + 8 * scale).view(rows, -1).t()],
                                            -1).contiguous().to(torch.bfloat16)

        def product(self, rows):
            return torch._weight_int4pack_mm_for_cpu(rows, self.packed, self.group, self.scale_offset)

    from pipelines.quantize import _untie_output_layer

    _untie_output_layer(model)
    swapped = Int4WeightOnly if kernel == "int4pack_bf16" else Int8WeightOnly
    for name in [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and (
            swapped is Int8WeightOnly or (m.out_features % 16 == 0 and m.in_features % 32 == 0))]:  # int4 packing
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, swapped(getattr(model.get_submodule(parent), child)))
    return model


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--others", action="store_true", help="also torch.compile of ModelDeck's int8 (minutes "
                     "of compiling) and torchao's int8 layouts (if torchao is installed: not a dependency)")
    cli.add_argument("--only", help="comma-separated row numbers of the table to measure, 0 (float32, the "
                     "reference) always included: 0,2,4,5,9,11,12 is the kernels alone")
    args = cli.parse_args()
    p_len, steps = (20, 8) if args.tiny else (200, 64)
    os.environ["MODELDECK_CHAT_MODEL"] = tiny_env()["MODELDECK_CHAT_MODEL"] if args.tiny else str(qwen_real_size())
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from pipelines import registry
    from pipelines.engine import engine, in_own_thread
    from pipelines.quantize import weight_bytes

    source = registry.resolve("chat").source
    torch.set_grad_enabled(False)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 250 if args.tiny else 150_000, (1, p_len), generator=generator)
               for _ in range(args.repeats + 1)]

    def load(dtype: str, int8: dict | None):
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype)).eval()
        if int8 is None:
            return model
        return other_kernel(model, int8["kernel"]) if "kernel" in int8 else modeldeck_int8(model, **int8)

    def measure(model, reference: dict | None) -> dict:
        """On the engine thread, as in the app: prefill, greedy decode steps, logits against ``reference``.

        Every torch call of this benchmark runs on that one thread: see pipelines/engine.py for why.
        """
        with torch.inference_mode():  # as the app's decode loop (autograd is on in a fresh thread)
            return measured(model, reference)

    def measured(model, reference: dict | None) -> dict:
        prefill, step, logits = [], [], []
        for ids in prompts:
            logits.append(model(ids).logits[0].float())
            cache = DynamicCache(config=model.config)
            began = time.perf_counter()
            token = model(ids, past_key_values=cache, logits_to_keep=1).logits[:, -1:].argmax(-1)
            prefill.append(time.perf_counter() - began)
            for _ in range(steps):
                began = time.perf_counter()
                token = model(token, past_key_values=cache).logits[:, -1:].argmax(-1)
                step.append(time.perf_counter() - began)
        reference = reference or {"logits": logits}
        pairs = list(zip(logits, reference["logits"]))
        return {"prefill": statistics.median(prefill[1:]), "step": statistics.median(step[len(step) // 4:]),
                "logits": logits,
                "agree": statistics.mean((q.argmax(-1) == f.argmax(-1)).float().mean().item() for q, f in pairs),
                "error": statistics.mean(((q - f).norm() / f.norm()).item() for q, f in pairs)}

    variants = VARIANTS
    if args.only:
        keep = {0} | {int(n) for n in args.only.split(",")}
        variants = [v for n, v in enumerate(VARIANTS) if n in keep]
    if args.others:
        variants = variants + [("ModelDeck's int8 under torch.compile(dynamic=True)", "float32",
                                {"kernel": "compiled"})]
        try:
            import torchao  # noqa: F401
            variants = variants + [(f"{k} (torchao {torchao.__version__}, eager)", "float32", {"kernel": k})
                                   for k in ("torchao weight-only", "torchao dynamic per-token")]
        except ImportError:
            print("torchao is not installed: its rows are left out")
    rows, reference = [], None
    for label, dtype, int8 in variants:
        model = in_own_thread(load, dtype, int8)
        result = engine.call(measure, model, reference)
        reference = reference or result
        rows.append([label, result["prefill"], 1000 * result["step"], 1 / result["step"],
                     reference["step"] / result["step"], result["agree"], result["error"],
                     round(weight_bytes(model) / 2**20) if not (int8 or {}).get("kernel") else "-"])
        del model, result
    print(f"model: {'tiny' if args.tiny else 'Qwen2.5-0.5B-sized random weights'}; {p_len}-token prompts, "
          f"{steps} greedy steps each; medians over {args.repeats} prompts (+1 warm-up)")
    print(machine())
    print(table(["weights", "prefill (s)", "decode ms/token", "tokens/s", "decode × float32",
                 "top-1 agreement", "relative logit error", "weights (MiB)"], rows))
    if choices := int8_choices():
        print()
        print(choices)


if __name__ == "__main__":
    main()
