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


@pytest.mark.parametrize("costs, expected", [((5.0, 2.0), "b"), ((2.0, 5.0), "a")])
def test_the_self_test_keeps_the_faster_kernel(monkeypatch, costs, expected):
    clock = _Clock()
    monkeypatch.setattr(int8_kernels.time, "perf_counter", clock)
    kinds = [_fake("a", costs[0], clock), _fake("b", costs[1], clock)]
    monkeypatch.setattr(int8_kernels, "KERNELS", {k.name: k for k in kinds})
    int8_kernels._measured.cache_clear()
    try:
        assert int8_kernels.kernel(32, 16, LEVELS).name == expected
        monkeypatch.setenv("MODELDECK_INT8_KERNEL", "onednn")  # a setting skips the test
        monkeypatch.setattr(int8_kernels, "KERNELS", {**int8_kernels.KERNELS, "onednn": kinds[0]})
        assert int8_kernels.kernel(32, 16, LEVELS) is kinds[0]
    finally:
        int8_kernels._measured.cache_clear()


def test_a_kernel_that_is_not_exact_here_is_never_chosen(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(int8_kernels.time, "perf_counter", clock)
    kinds = [_fake("fast but saturating", 1.0, clock, saturates=True), _fake("exact", 9.0, clock)]
    monkeypatch.setattr(int8_kernels, "KERNELS", {k.name: k for k in kinds})
    int8_kernels._measured.cache_clear()
    try:
        assert int8_kernels.kernel(512, 16, LEVELS).name == "exact"
    finally:
        int8_kernels._measured.cache_clear()


def test_the_self_test_runs_once_per_shape(monkeypatch):
    runs = []
    real = int8_kernels._fastest
    monkeypatch.setattr(int8_kernels, "_fastest", lambda *args: runs.append(args) or real(*args))
    int8_kernels._measured.cache_clear()
    try:
        for _ in range(3):
            int8_kernels.kernel(48, 24, LEVELS)
        assert len(runs) == 1
    finally:
        int8_kernels._measured.cache_clear()
