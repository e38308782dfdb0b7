"""The growing key/value cache layer holds exactly what transformers' concatenating one holds, without copying."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from pipelines.kv_cache import GrowingLayer


def _steps(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    sizes = [37] + [1] * 150 + [5, 1, 1]  # a prompt, then one position per decode step
    return [(torch.randn((3, 2, n, 8), generator=g), torch.randn((3, 2, n, 8), generator=g)) for n in sizes]


def test_it_holds_what_concatenation_holds_also_after_others_replace_its_tensors():
    grown, plain = GrowingLayer(), DynamicLayer()
    for step, (k, v) in enumerate(_steps(1)):
        if step == 60:  # the batcher drops a row and trims padding: new tensors put in from outside
            for layer in (grown, plain):
                layer.keys, layer.values = layer.keys[[0, 2], :, 3:], layer.values[[0, 2], :, 3:]
        if step >= 60:
            k, v = k[:2], v[:2]
        got, want = grown.update(k, v), plain.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert grown.get_seq_length() == plain.get_seq_length()


def test_a_decode_step_writes_into_spare_room_instead_of_copying_the_cache():
    layer = GrowingLayer()
    steps = _steps(2)
    layer.update(*steps[0])
    moves = 0
    for k, v in steps[1:]:
        before = layer.keys.data_ptr()
        layer.update(k, v)
        moves += layer.keys.data_ptr() != before
    # 153 more positions after a 37-token prompt: the buffer is remade only when full (64+ positions at a time)
    assert 1 <= moves <= 3
