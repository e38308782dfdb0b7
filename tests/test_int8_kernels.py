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
    first, second = logits.values()
    assert torch.allclose(first, second, rtol=1e-4, atol=1e-4)  # the same integer sums, scaled in another order


class _Clock:
    """A stand-in for time.perf_counter that only the fake kernels move."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake(name: str, cost: float, clock: _Clock, saturates: bool = False) -> type:
    class Fake(int8_kernels.FbgemmWeights):
        def times(self, unit, levels):
            clock.now += cost
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
    assert int8_kernels.kernel(32, 16, LEVELS).name == expected
    calls = len(int8_kernels.SELF_TEST_ROWS)  # products per kernel in one timed round
    [choice] = int8_kernels.choices()
    assert (choice.name, choice.reason, choice.in_features, choice.out_features) == (expected, "self-test", 32, 16)
    assert choice.micros == {"a": costs[0] * calls * 1e6, "b": costs[1] * calls * 1e6}  # the fake clock's times
    monkeypatch.setenv("MODELDECK_INT8_KERNEL", "onednn")  # a setting skips the test
    monkeypatch.setattr(int8_kernels, "KERNELS", {**int8_kernels.KERNELS, "onednn": kinds[0]})
    assert int8_kernels.kernel(32, 16, LEVELS) is kinds[0]
    [choice] = int8_kernels.choices()  # the latest choice for the shape
    assert (choice.name, choice.reason, choice.micros) == ("onednn", "setting", {})


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

    monkeypatch.setattr(int8_kernels, "KERNELS", {"missing": Missing, "fbgemm": int8_kernels.FbgemmWeights})
    assert int8_kernels.kernel(64, 16, LEVELS) is int8_kernels.FbgemmWeights
    [choice] = int8_kernels.choices()
    assert (choice.reason, choice.rejected) == ("only exact", {"missing": "unavailable: "})


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
    choice = next(c for c in int8_kernels.choices() if c.name == used and c.levels == LEVELS)
    assert f"{choice.out_features}×{choice.in_features} → **{used}**" in page
    timed = [f"{name} {micros:.0f} µs" for name, micros in choice.micros.items()]
    assert choice.reason != "self-test" or (len(timed) >= 2 and all(t in page for t in timed))
