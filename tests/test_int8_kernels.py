"""The int8 kernels and the self-test that picks one for the processor it runs on."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from pipelines import int8_kernels, registry
from pipelines.devices import int8_activation_levels
from pipelines.int8 import Int8Linear
from pipelines.quantize import quantize_int8

LEVELS = int8_activation_levels()


@pytest.mark.parametrize("name", sorted(int8_kernels.KERNELS))
def test_each_kernel_sums_extreme_products_exactly_at_this_cpus_width(name):
    assert int8_kernels._exact(int8_kernels.KERNELS[name], LEVELS, 512)
    assert int8_kernels._exact(int8_kernels.KERNELS[name], 63, 512)  # 7 bits, the width without VNNI, anywhere


@pytest.mark.parametrize("name", sorted(int8_kernels.KERNELS))
def test_each_kernel_quantises_each_token_on_its_own(name):
    linear = torch.nn.Linear(64, 32)
    layer = Int8Linear(linear, levels=LEVELS, kernel=int8_kernels.KERNELS[name])
    x = torch.randn(2, 5, 64)
    together = layer(x)
    x[0, 2] *= 1000
    changed = layer(x)
    assert torch.equal(changed[0, :2], together[0, :2]) and torch.equal(changed[1], together[1])
    alone = torch.cat([layer(x[i:i + 1, j:j + 1]) for i in range(2) for j in range(5)]).reshape(2, 5, 32)
    assert torch.equal(alone, changed)  # a token's numbers do not depend on its company


@pytest.mark.parametrize("per_channel", [True, False])
def test_each_kernel_gives_back_the_same_quantised_weight(per_channel):
    weight = torch.randn(48, 64)
    expected = int8_kernels.FbgemmWeights(weight, per_channel).unpacked()
    for kind in int8_kernels.KERNELS.values():  # oneDNN's packed layout is read back through products
        unpacked = kind(weight, per_channel).unpacked()
        assert torch.equal(unpacked.int_repr(), expected.int_repr()) and unpacked.qscheme() == expected.qscheme()
        assert torch.allclose(unpacked.dequantize(), expected.dequantize())


def test_the_kernels_agree_on_a_whole_model(monkeypatch):
    source = registry.resolve("chat").source
    ids = torch.randint(3, 200, (2, 11))
    logits = {}
    for name in int8_kernels.KERNELS:
        monkeypatch.setenv("MODELDECK_INT8_KERNEL", name)
        model = quantize_int8(AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval())
        assert {m.weights.name for m in model.modules() if isinstance(m, Int8Linear)} == {name}
        with torch.inference_mode():
            logits[name] = model(ids).logits
    first, *others = logits.values()
    for other in others:  # the same integer sums, scaled in another order
        assert torch.allclose(first, other, rtol=1e-4, atol=1e-4)


class _Clock:
    """A stand-in for time.perf_counter that only the fake kernels move."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake(name: str, cost: float, clock: _Clock, saturates: bool = False, prompt_cost: float | None = None) -> type:
    class Fake(int8_kernels.FbgemmWeights):
        def times(self, unit, levels):
            prompt = unit.shape[0] == int8_kernels.PROMPT_ROWS
            clock.now += cost if prompt_cost is None or not prompt else prompt_cost
            out = super().times(unit, levels)
            return out.clamp(-100, 100) if saturates else out  # a 16-bit sum that overflowed

    Fake.name = name
    return Fake


@pytest.fixture
def own_choices(monkeypatch):
    """Kernel choices made with fake kernels stay out of the record the status tab shows."""
    monkeypatch.setattr(int8_kernels, "_choices", {})
    int8_kernels._measured.cache_clear()
    yield
    int8_kernels._measured.cache_clear()


@pytest.mark.parametrize("costs, expected", [((5.0, 2.0), "b"), ((2.0, 5.0), "a")])
def test_the_self_test_keeps_the_faster_kernel_and_records_why(monkeypatch, own_choices, costs, expected):
    clock = _Clock()
    monkeypatch.setattr(int8_kernels.time, "perf_counter", clock)
    kinds = [_fake("a", costs[0], clock), _fake("b", costs[1], clock)]
    monkeypatch.setattr(int8_kernels, "KERNELS", {k.name: k for k in kinds})
    chosen = int8_kernels.kernel(32, 16, LEVELS)
    assert chosen.step is chosen.prompt and chosen.name == expected  # one packing when one kernel wins both
    calls = len(int8_kernels.STEP_ROWS)  # step products per kernel in one timed round (and one prompt product)
    [choice] = int8_kernels.choices()
    assert (choice.name, choice.reason, choice.in_features, choice.out_features) == (expected, "self-test", 32, 16)
    assert choice.micros == {"a": costs[0] * calls * 1e6, "b": costs[1] * calls * 1e6}  # the fake clock's times
    assert choice.prompt_micros == {"a": costs[0] * 1e6, "b": costs[1] * 1e6} and choice.label == expected
    monkeypatch.setenv("MODELDECK_INT8_KERNEL", "onednn")  # a setting skips the test
    monkeypatch.setattr(int8_kernels, "KERNELS", {**int8_kernels.KERNELS, "onednn": kinds[0]})
    assert int8_kernels.kernel(32, 16, LEVELS) == int8_kernels.Kernels(kinds[0], kinds[0])
    [choice] = int8_kernels.choices()  # the latest choice for the shape
    assert (choice.name, choice.reason, choice.micros) == ("onednn", "setting", {})


def test_a_kernel_faster_for_prompts_packs_the_weights_a_second_time(monkeypatch, own_choices):
    clock = _Clock()
    monkeypatch.setattr(int8_kernels.time, "perf_counter", clock)
    # "steps" is fast on a step's few rows, "prompts" on a prompt's many: each is chosen for its own.
    kinds = [_fake("steps", 1.0, clock, prompt_cost=50.0), _fake("prompts", 3.0, clock, prompt_cost=10.0)]
    monkeypatch.setattr(int8_kernels, "KERNELS", {k.name: k for k in kinds})
    chosen = int8_kernels.kernel(32, 16, LEVELS)
    assert (chosen.step, chosen.prompt) == (kinds[0], kinds[1])
    [choice] = int8_kernels.choices()
    assert (choice.name, choice.prompt_name, choice.prompt_reason) == ("steps", "prompts", "self-test")
    assert choice.prompt_micros == {"steps": 50e6, "prompts": 10e6} and choice.label == "steps + prompts (prompts)"
    weights = chosen(torch.randn(16, 32), True)
    assert weights.packings == 2 and weights.name == choice.label
    assert weights.for_prompt(False).name == "steps" and weights.for_prompt(True).name == "prompts"
    assert chosen.steps_only()(torch.randn(16, 32), True).packings == 1  # the output layer's: one packing

    monkeypatch.setenv("MODELDECK_INT8_PROMPT_KERNEL", "same")  # one packing, whatever prompts would gain
    same = int8_kernels.kernel(32, 16, LEVELS)
    assert (same.step, same.prompt) == (kinds[0], kinds[0])
    monkeypatch.setenv("MODELDECK_INT8_PROMPT_KERNEL", "")
    monkeypatch.setattr(int8_kernels, "KERNELS", {**int8_kernels.KERNELS, "onednn": kinds[1]})
    monkeypatch.setenv("MODELDECK_INT8_KERNEL", "onednn")  # a step kernel set by hand reads prompts too
    assert int8_kernels.kernel(32, 16, LEVELS) == int8_kernels.Kernels(kinds[1], kinds[1])


def test_a_kernel_far_slower_is_not_timed_again(monkeypatch, own_choices):
    clock = _Clock()
    monkeypatch.setattr(int8_kernels.time, "perf_counter", clock)
    calls = []
    slow = _fake("slow", 1.0, clock, prompt_cost=1000.0)
    real_times = slow.times
    slow.times = lambda self, unit, levels: calls.append(unit.shape[0]) or real_times(self, unit, levels)
    monkeypatch.setattr(int8_kernels, "KERNELS", {"fast": _fake("fast", 2.0, clock, prompt_cost=5.0), "slow": slow})
    assert int8_kernels.kernel(32, 16, LEVELS).prompt.name == "fast"
    assert calls.count(int8_kernels.PROMPT_ROWS) == 1  # timed once on a prompt (200x slower), then left out
    assert calls.count(1) == int8_kernels.SELF_TEST_ROUNDS  # still timed on steps, where it wins


def test_a_kernel_that_is_not_exact_here_is_never_chosen(monkeypatch, own_choices):
    clock = _Clock()
    monkeypatch.setattr(int8_kernels.time, "perf_counter", clock)
    kinds = [_fake("fast but saturating", 1.0, clock, saturates=True), _fake("exact", 9.0, clock)]
    monkeypatch.setattr(int8_kernels, "KERNELS", {k.name: k for k in kinds})
    assert int8_kernels.kernel(512, 16, LEVELS).name == "exact"
    [choice] = int8_kernels.choices()
    assert choice.reason == "only exact" and "not exact" in choice.rejected["fast but saturating"]


def test_a_kernel_this_torch_or_cpu_lacks_is_left_out_and_the_reason_kept(monkeypatch, own_choices):
    class Missing(int8_kernels.FbgemmWeights):
        name = "missing"

        def __init__(self, weight, per_channel):
            raise RuntimeError("")  # torch's errors for a missing kernel can be empty

    class NoSuchOp(int8_kernels.OneDnnPackedWeights):
        name = "no such op"

        def __init__(self, weight, per_channel):
            torch.ops.onednn.qlinear_prepack_that_this_torch_lacks(weight, None)  # AttributeError

    monkeypatch.setattr(int8_kernels, "KERNELS", {"missing": Missing, "no such op": NoSuchOp,
                                                  "fbgemm": int8_kernels.FbgemmWeights})
    assert int8_kernels.kernel(64, 16, LEVELS).step is int8_kernels.FbgemmWeights
    [choice] = int8_kernels.choices()
    assert choice.reason == "only exact" and choice.rejected["missing"] == "unavailable: "
    assert choice.rejected["no such op"].startswith("unavailable: ") and "qlinear_prepack_that" in choice.rejected[
        "no such op"]


def test_the_self_test_runs_once_per_shape(monkeypatch, own_choices):
    runs = []
    real = int8_kernels._fastest
    monkeypatch.setattr(int8_kernels, "_fastest", lambda *args: runs.append(args) or real(*args))
    for _ in range(3):
        int8_kernels.kernel(48, 24, LEVELS)
    assert len(runs) == 1


def test_the_status_tab_names_the_processor_and_what_int8_chose_on_it(monkeypatch, fresh_registry):
    from pipelines import devices
    from ui.about_tab import status_markdown

    # An Intel Xeon with AMX but no AVX-512 VNNI flag: 7-bit activations, and the table says what it lacks.
    monkeypatch.setattr(devices, "cpu_name", lambda: "Intel(R) Xeon(R) Platinum 8480+")
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "amx_int8", "sse4_2"}))
    page = status_markdown()
    assert "`Intel(R) Xeon(R) Platinum 8480+`" in page
    assert "AVX2 · AVX-512 · AMX int8 (无 no AVX-512 VNNI, AVX-VNNI, AVX-512 bf16)" in page
    assert "7 位激活 7-bit activations" in page
    monkeypatch.setattr(int8_kernels, "_choices", {})  # a process that has loaded no int8 model yet
    monkeypatch.setenv("MODELDECK_QUANTIZE", "none")
    assert "**int8:** 不使用 not used (`cpu`, `float32`, MODELDECK_QUANTIZE)" in status_markdown()
    monkeypatch.undo()

    fresh_registry.get_model("chat")  # int8 on the CPU: the kernel is chosen for its largest product
    page = status_markdown()
    chat_row = next(line for line in page.splitlines() if line.startswith("| Tiny Qwen2 |"))
    [used] = fresh_registry.loaded_models()[0]["int8_kernels"]
    assert f"float32 + int8 ({used})" in chat_row and "modeldeck_sdpa" in chat_row
    choice = next(c for c in int8_kernels.choices() if c.label == used and c.levels == LEVELS)
    assert f"{choice.out_features}×{choice.in_features} → **{choice.name}**" in page
    timed = [f"{name} {micros:.0f} µs" for name, micros in choice.micros.items()]
    assert choice.reason != "self-test" or (len(timed) >= 2 and all(t in page for t in timed))


def _recorded(monkeypatch) -> list[tuple[str, int]]:
    """(kernel name, rows) for every int8 product from now on, through fbgemm or oneDNN's packed primitive."""
    calls = []
    for kind in (int8_kernels.FbgemmWeights, int8_kernels.OneDnnPackedWeights):
        def times(self, unit, levels, real=kind.times, name=kind.name):
            calls.append((name, unit.shape[0]))
            return real(self, unit, levels)
        monkeypatch.setattr(kind, "times", times)
    return calls


def test_prompts_take_the_prompt_kernel_and_decode_steps_the_step_kernel(monkeypatch, fresh_registry):
    from pipelines.batching import batcher_for
    from pipelines.int8 import PROMPT_ROWS
    from pipelines.sampling import SamplingParams

    monkeypatch.setenv("MODELDECK_INT8_KERNEL", "fbgemm")
    monkeypatch.setenv("MODELDECK_INT8_PROMPT_KERNEL", "onednn_packed")
    loaded = fresh_registry.get_model("chat")
    assert fresh_registry.loaded_models()[0]["int8_kernels"] == ["fbgemm + onednn_packed (prompts)"]
    calls = _recorded(monkeypatch)
    prompt = loaded.processor("你好，我是一个模型。Hello!", add_special_tokens=False)["input_ids"]
    assert len(prompt) < PROMPT_ROWS  # a short prompt: by its rows alone it would pass for a decode step
    stream = batcher_for(loaded).submit(prompt, SamplingParams(max_new_tokens=4, temperature=0), [])
    stream.collect()
    read = [rows for name, rows in calls if name == "onednn_packed"]
    steps = [rows for name, rows in calls if name == "fbgemm"]
    layers = loaded.model.config.num_hidden_layers
    assert read and set(read) == {len(prompt)}  # every product of the prompt's pass, all its tokens at once
    assert len(read) == 4 * layers  # q/k/v, o, gate/up and down: the output layer has one packing
    assert set(steps) == {1} and len(steps) == 1 + (stream.usage.completion_tokens - 1) * (4 * layers + 1)

    calls.clear()  # outside the batcher, a pass's rows decide
    with torch.inference_mode():
        loaded.model(torch.randint(3, 200, (1, PROMPT_ROWS)))
        assert {name for name, rows in calls if rows == PROMPT_ROWS} == {"onednn_packed", "fbgemm"}  # fbgemm: the head
        calls.clear()
        loaded.model(torch.randint(3, 200, (1, PROMPT_ROWS - 1)))
    assert {name for name, _ in calls} == {"fbgemm"}


def test_the_status_tab_says_which_kernel_reads_prompts_and_why():
    from ui.about_tab import _choice

    timed = int8_kernels.KernelChoice(896, 4864, 127, "fbgemm", "self-test", {"fbgemm": 300.0, "onednn": 700.0},
                                      prompt_name="onednn_packed", prompt_micros={"fbgemm": 2000.0, "onednn": 900.0,
                                                                                  "onednn_packed": 650.0},
                                      prompt_reason="self-test")
    line = _choice(timed)
    assert line.startswith("4864×896 → **fbgemm** (自检 self-test, 解码 decode steps: fbgemm 300 µs, onednn 700 µs; "
                           "提示词 prompts: onednn_packed 650 µs, onednn 900 µs, fbgemm 2000 µs)")
    assert line.endswith("; 读提示词 reading prompts → **onednn_packed**")
    same = int8_kernels.KernelChoice(896, 4864, 127, "fbgemm", "self-test", {"fbgemm": 300.0},
                                     prompt_name="fbgemm", prompt_micros={"fbgemm": 2000.0}, prompt_reason="self-test")
    assert "reading prompts" not in _choice(same)
    set_by_hand = int8_kernels.KernelChoice(896, 4864, 127, "fbgemm", "setting", prompt_name="onednn_packed",
                                            prompt_reason="setting")
    assert _choice(set_by_hand) == ("4864×896 → **fbgemm** (MODELDECK_INT8_KERNEL); 读提示词 reading prompts → "
                                    "**onednn_packed** (MODELDECK_INT8_PROMPT_KERNEL)")
