"""Top-p without sorting the vocabulary: the same tokens a full sort keeps, and the same draw.

A full sort of 152k tokens costs 12-15 ms a row on two cores, a third of a decode step. Here each row's
probabilities (unnormalised, the most likely token at 1) are summed in bins read off their float32 bits:
the exponent and the top mantissa bits, ``TOP_P_BINS_PER_HALVING`` bins per halving of probability. So a
bin holds exactly the weights between two float32 numbers, in the weights' own order, with no rounding
between a token's bin and its weight. Bins before the one where the summed mass passes top-p are kept
whole (one ``threshold``), later ones are dropped, and only that bin's tokens are sorted. The draw then
takes the running sum of the kept weights in vocabulary order in two levels: over blocks of ``DRAW_BLOCK``
tokens, then inside the one block the uniform number falls in. Rows are done one at a time: a row's
temporaries stay small, and comparisons against a number instead of a column of numbers stay vectorised.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from typing import Any

TOP_P_BINS_PER_HALVING = 32  # top-p sums probabilities in bins this fine (1/32 of a halving, ~0.022 nats)
_BIN_SHIFT = 23 - 5  # a float32 weight's bin: its exponent and the top 5 (log2 of 32) mantissa bits
TOP_P_BINS = 128 * TOP_P_BINS_PER_HALVING  # every float32 weight in [0, 1]
DRAW_BLOCK = 1024  # a draw's running sum: over blocks of this many tokens, then inside one block


def _weights(row: Any) -> Any:
    """One row's unnormalised probabilities in float32: ``exp(logit - max)``, so the most likely token has 1."""
    row = row.float()
    return (row - row.max()).exp_()


def _wide(tensor: Any) -> Any:
    """The dtype sums are taken in: float64, or float32 on Apple's mps (which has no float64)."""
    import torch

    return torch.float32 if tensor.device.type == "mps" else torch.float64


def _float32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<i", bits))[0]


def _kept(weights: Any, top_p: float) -> Any:
    """One row's top-p tokens: ``weights`` where kept and 0 elsewhere, or None when every token is kept."""
    import torch

    wide = _wide(weights)
    key = weights.view(torch.int32).bitwise_right_shift(_BIN_SHIFT).long()
    # The sum runs in one thread per part: split the row into one part per thread, then add the parts up.
    parts = torch.get_num_threads() if weights.numel() % torch.get_num_threads() == 0 else 1
    mass = torch.zeros((parts, TOP_P_BINS), dtype=wide, device=weights.device)
    mass = mass.scatter_add_(1, key.view(parts, -1), weights.to(wide).view(parts, -1)).sum(0)
    above = mass.flip(0).cumsum(0)  # the mass of each bin and every more likely one, most likely bin first
    limit = above[-1:] * top_p
    passed = int(torch.searchsorted(above, limit, right=True))  # the first bin, from the top, that passes it
    if passed == TOP_P_BINS:
        return None
    edge = TOP_P_BINS - 1 - passed
    before = above[passed - 1] if passed else above.new_zeros(())
    kept = torch.threshold(weights, _float32(((edge + 1) << _BIN_SHIFT) - 1), 0.0)  # every bin above the edge
    lowest = _float32((edge << _BIN_SHIFT) - 1) if edge else -1.0
    members = _nonzero(torch.threshold(weights, lowest, 0.0).sub_(kept))  # the edge bin (its zeros aside)
    share, order = weights[members].to(wide).sort(descending=True)
    taken = int((before + share.cumsum(0) - share <= limit).sum())  # kept while the more likely hold <= top_p
    kept[members[order[:taken]]] = share[:taken].to(kept.dtype)
    return kept


def _nonzero(values: Any) -> Any:
    """The positions of a row's nonzero values, found block by block (``nonzero`` over 152k costs ~100 µs)."""
    import torch

    whole = values.numel() - values.numel() % DRAW_BLOCK
    blocks = values[:whole].view(-1, DRAW_BLOCK)
    busy = blocks.amax(-1).nonzero()[:, 0]
    if len(busy) > len(blocks) // 4:  # spread out: one pass over the row is cheaper
        return values.nonzero()[:, 0]
    found = blocks[busy].nonzero()
    return torch.cat([busy[found[:, 0]] * DRAW_BLOCK + found[:, 1], values[whole:].nonzero()[:, 0] + whole])


def nucleus(logits: Any, top_p: float) -> Any:
    """Return a mask of each row's top-p tokens (those whose more likely tokens hold at most ``top_p``), unsorted.

    The same set a full sort gives, without sorting the vocabulary.
    """
    import torch

    masks = []
    for row in logits:
        kept = _kept(_weights(row), top_p)
        masks.append(torch.ones_like(row, dtype=torch.bool) if kept is None else kept > 0)
    return torch.stack(masks)


def draw_top_p(logits: Any, top_p: float, generator: Any) -> Any:
    """``draw(*processed(...))`` for top-p alone, with fewer passes over the vocabulary: the same tokens.

    Each row's kept tokens keep their unnormalised probabilities, and the running sum is taken in two
    levels: over blocks of ``DRAW_BLOCK`` tokens, then inside the one block the uniform number falls in.
    """
    import torch

    uniform = torch.rand((logits.shape[0], 1), generator=generator, device=generator.device).view(-1).tolist()
    drawn = []
    for row, u in zip(logits, uniform):
        weights = _weights(row)
        kept = _kept(weights, top_p)
        drawn.append(_draw(weights if kept is None else kept, u))
    return torch.tensor(drawn, device=logits.device).view(-1, 1)


def _draw(kept: Any, u: float) -> int:
    """The token where ``u`` (in [0, 1)) of the running sum of ``kept`` (one row, vocabulary order) falls."""
    wide = _wide(kept)
    whole = kept.numel() - kept.numel() % DRAW_BLOCK
    sums = kept[:whole].view(-1, DRAW_BLOCK).sum(-1, dtype=wide).tolist()
    if whole < kept.numel():
        sums.append(float(kept[whole:].sum(dtype=wide)))
    ends = list(itertools.accumulate(sums))  # the running sum at each block's end (float64, as torch's cumsum)
    x = ends[-1] * u
    if x >= ends[-1]:  # u rounded up to the total: the last token with a probability
        return kept.numel() - 1 - int((kept.flip(0) > 0).int().argmax())
    block = bisect.bisect_right(ends, x)
    running = kept[block * DRAW_BLOCK:(block + 1) * DRAW_BLOCK].to(wide).cumsum(0).tolist()
    within = bisect.bisect_right(running, x - ends[block - 1] if block else x)
    # Never past the block's last token with a probability (its own sum may round below its share of `ends`).
    while within == len(running) or (within and running[within] == running[within - 1]):
        within -= 1
    return block * DRAW_BLOCK + within
