"""What you see is what samples: one function turns logits into the distribution, equal to transformers'."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from pipelines.sampling import SamplingParams, choose, distribution, new_generator, nucleus, processed

VOCAB = 151936  # Qwen2.5's vocabulary: wider than the top-p candidates


def _logits(seed: int, peaked: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((1, VOCAB), generator=g) * 2
    if peaked:  # a trained model's shape: a few dozen likely tokens, a long flat tail
        logits[0, torch.randperm(VOCAB, generator=g)[:40]] += torch.linspace(14, 6, 40)
    return logits


def _transformers(logits: torch.Tensor, seen: torch.Tensor, p: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' processors in generate()'s order: (the scores top-p is given, the final scores)."""
    steps = LogitsProcessorList()
    if p.repetition_penalty != 1.0:
        steps.append(RepetitionPenaltyLogitsProcessor(p.repetition_penalty))
    steps.append(TemperatureLogitsWarper(p.temperature))
    if p.top_k:
        steps.append(TopKLogitsWarper(p.top_k))
    before_top_p = steps(seen, logits.clone())
    after = TopPLogitsWarper(p.top_p)(seen, before_top_p.clone()) if p.top_p < 1.0 else before_top_p
    return before_top_p[0], after[0]


def _on_the_top_p_edge(before_top_p: torch.Tensor, p: SamplingParams, token: int) -> bool:
    """True when ``token`` sits on the top-p boundary within float32 rounding of a 152k-term cumulative sum:
    there, which side it lands on depends on the order of summation (transformers sums from the bottom)."""
    probs = before_top_p.double().softmax(-1)
    above = float(probs[probs > probs[token]].sum())  # the more likely tokens' mass, in float64
    return abs(above - p.top_p) < 1e-4


SETTINGS = [SamplingParams(temperature=t, top_k=k, top_p=tp, repetition_penalty=r)
            for t, k, tp, r in [(1.0, 0, 1.0, 1.0), (0.7, 0, 0.9, 1.0), (1.3, 50, 1.0, 1.0), (0.8, 40, 0.8, 1.1),
                                (0.5, 0, 0.5, 1.3), (1.0, 5, 0.95, 2.0), (2.0, 0, 0.3, 1.05)]]


@pytest.mark.parametrize("peaked", [True, False], ids=["peaked", "flat"])
@pytest.mark.parametrize("p", SETTINGS, ids=lambda p: f"T{p.temperature}-k{p.top_k}-p{p.top_p}-r{p.repetition_penalty}")
def test_the_distribution_equals_transformers_logits_processors(p, peaked):
    logits = _logits(1, peaked)
    seen = torch.randint(0, VOCAB, (1, 30), generator=torch.Generator().manual_seed(2))
    seen[0, :5] = logits[0].topk(5).indices  # the penalty must touch likely tokens too
    before_top_p, theirs = _transformers(logits, seen, p)
    probs, kept = distribution(logits[0], p, seen[0])
    differ = (kept != torch.isfinite(theirs)).nonzero()[:, 0]
    assert len(differ) <= 1 and all(_on_the_top_p_edge(before_top_p, p, int(i)) for i in differ)
    theirs[differ] = torch.where(kept[differ], before_top_p[differ], float("-inf"))  # the same set, to compare
    assert torch.allclose(probs, theirs.softmax(-1), atol=1e-5, rtol=0)
    assert abs(float(probs.double().sum()) - 1) < 1e-4  # float32 softmax over 152k tokens (transformers' too)


def test_top_p_on_a_flat_distribution_keeps_what_a_full_sort_keeps():
    """A flat distribution whose top-p mass spreads over most of the vocabulary keeps what the full sort keeps."""
    logits = torch.randn((1, VOCAB), generator=torch.Generator().manual_seed(6)) * 0.1
    logits[0, :10] = 3.0
    p = SamplingParams(temperature=1.0, top_p=0.9)
    probs, kept = distribution(logits[0], p)
    before_top_p, theirs = _transformers(logits, torch.zeros((1, 1), dtype=torch.long), p)
    assert int(kept.sum()) > 1000
    differ = (kept != torch.isfinite(theirs)).nonzero()[:, 0]
    assert len(differ) <= 1 and all(_on_the_top_p_edge(before_top_p, p, int(i)) for i in differ)


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.99])
def test_the_nucleus_without_a_sort_is_the_top_p_set(top_p):
    """Rows that are flat, peaked, full of ties, partly -inf or all equal: the kept tokens are the most likely
    ones, and each kept token's more likely tokens hold at most top_p while the kept ones hold more."""
    g = torch.Generator().manual_seed(7)
    rows = torch.randn((5, VOCAB), generator=g) * 2
    rows[1] = _logits(8, True)[0]
    rows[2] = (rows[2] * 2).round()  # ties: thousands of tokens share each value
    rows[3, :50000] = float("-inf")
    rows[4] = 0.0
    keep = nucleus(rows, top_p)
    probs = rows.double().softmax(-1)
    for row, kept in zip(probs, keep):
        assert bool(kept.any()) and float(row[kept].min()) >= float(row[~kept].max())
        last = float(row[kept].min())
        above_last = float(row[row > last].sum())
        assert above_last <= top_p + 1e-6  # the least likely kept token still had room
        assert float(row[kept].sum()) > top_p - 1e-6  # and the kept ones reach top_p
        tied = int(kept.sum()) - int((row > last).sum())  # which equal tokens are kept is arbitrary, not how many
        assert 1 <= tied <= int((row == last).sum()) and above_last + (tied - 1) * last <= top_p + 1e-6


def test_temperature_zero_is_one_hot_on_the_penalised_maximum():
    logits = _logits(3, True)
    best = int(logits.argmax())
    probs, kept = distribution(logits[0], SamplingParams(temperature=0))
    assert float(probs[best]) == 1.0 and int(kept.sum()) == 1
    penalised, _ = distribution(logits[0], SamplingParams(temperature=0, repetition_penalty=2.0), torch.tensor([best]))
    assert int(penalised.argmax()) != best or float(logits[0].topk(2).values.diff().abs()) > 0


def _old_pick(logits, p, generator, seen):
    """The token picking of the code before the explorer (commit 5cf6631), kept as the oracle, with two changes
    made since: top-p alone sorts the whole vocabulary and draws in vocabulary order, and the draw is the
    inverse-CDF one (written here independently: a comparison, then ``searchsorted``'s count)."""
    logits = logits.float()
    if seen is not None:
        prior = logits.gather(1, seen)
        prior = torch.where(prior < 0, prior * p.repetition_penalty, prior / p.repetition_penalty)
        logits = logits.scatter(1, seen, prior)
    if p.temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / p.temperature
    if p.top_k:
        values, index = torch.topk(logits, min(logits.shape[-1], p.top_k), dim=-1)
        if p.top_p < 1.0:
            probs = values.softmax(-1)
            values = values.masked_fill(probs.cumsum(-1) - probs > p.top_p, float("-inf"))
        return index.gather(-1, _inverse_cdf(values.softmax(-1), generator))
    if p.top_p < 1.0:  # top-p alone: a full sort, then back to vocabulary order (the order tokens are drawn in)
        values, index = torch.sort(logits, descending=True, dim=-1)
        probs = values.softmax(-1)
        values = values.masked_fill(probs.cumsum(-1) - probs > p.top_p, float("-inf"))
        logits = torch.empty_like(logits).scatter_(1, index, values)
    return _inverse_cdf(logits.softmax(-1), generator)


def _inverse_cdf(probs, generator):
    """One uniform number per row placed on the running sum (the draw that replaced torch.multinomial)."""
    running = probs.double().cumsum(-1)
    u = torch.rand((probs.shape[0], 1), generator=generator).double() * running[:, -1:]
    return (running <= u).sum(-1, keepdim=True)


@pytest.mark.parametrize("p", SETTINGS + [SamplingParams(temperature=0, repetition_penalty=1.2)],
                         ids=lambda p: f"T{p.temperature}-k{p.top_k}-p{p.top_p}-r{p.repetition_penalty}")
def test_a_seed_draws_the_same_tokens_as_the_oracle(p):
    seen = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(4))
    for seed in range(8):
        logits = torch.cat([_logits(10 + seed, True), _logits(20 + seed, True)])
        ours, theirs = new_generator(seed), new_generator(seed)
        for _ in range(3):  # consecutive draws from one generator, as a request's steps are
            mine = choose(logits, p, ours, seen if p.repetition_penalty != 1.0 else None)
            old = _old_pick(logits, p, theirs, seen if p.repetition_penalty != 1.0 else None)
            assert torch.equal(mine, old)


def test_processed_marks_removed_candidates_and_keeps_the_top_one():
    logits = _logits(5, True)
    values, ids = processed(logits, SamplingParams(temperature=1.0, top_k=10, top_p=0.01))
    assert ids.shape == (1, 10)
    assert torch.isfinite(values[0, 0]) and bool(torch.isinf(values[0, 1:]).all())
    assert int(ids[0, 0]) == int(logits.argmax())


def test_textgen_and_the_explorer_clamp_sampling_settings_to_the_same_ranges():
    from pipelines.sampling import REPETITION_PENALTY_RANGE, TEMPERATURE_RANGE, TOP_K_RANGE, TOP_P_RANGE
    from pipelines.textgen import generate_text
    from pipelines.next_token import settings as explorer_settings

    stream = generate_text("你好", None, max_new_tokens=2, temperature=9, top_k=5000, top_p=0.0,
                           repetition_penalty=7, seed=1)
    list(stream)
    notes: list[str] = []
    params = explorer_settings(9, 5000, 0.0, 7, notes)
    assert (params.temperature, params.top_k, params.top_p, params.repetition_penalty) == (
        TEMPERATURE_RANGE[1], TOP_K_RANGE[1], TOP_P_RANGE[0], REPETITION_PENALTY_RANGE[1])
    for notices in (stream.notices, notes):
        assert sum(name in " ".join(notices) for name in ("temperature", "top_k", "top_p", "repetition_penalty")) == 4


def test_draws_follow_the_distribution_and_never_pick_a_removed_token():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05] + [1e-4] * 995]))
    p = SamplingParams(temperature=1.0, top_k=4)
    generator = new_generator(7)
    counts = torch.bincount(torch.cat([choose(logits, p, generator)[:, 0] for _ in range(4000)]), minlength=1000)
    assert int(counts[4:].sum()) == 0  # top-k removed them: never drawn
    expected = torch.tensor([0.5, 0.2, 0.15, 0.1]) / 0.95 * 4000
    chi2 = float(((counts[:4] - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # 3 degrees of freedom: p = 0.001


def test_a_uniform_number_rounded_up_to_the_total_still_draws_a_kept_token(monkeypatch):
    from pipelines import sampling

    values = torch.tensor([[3.0, 2.0, 1.0, float("-inf"), float("-inf")]])
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.ones(shape, dtype=kw.get("dtype")))
    assert int(sampling.draw(values, None, new_generator(0))) == 2  # the last token with a probability


def _spread_logits() -> torch.Tensor:
    """Five likely tokens spread over three draw blocks and a 3000-token tail that top-p 0.9 removes."""
    logits = torch.full((1, 3000), -20.0)
    logits[0, [10, 500, 1500, 2100, 2999]] = torch.log(torch.tensor([0.4, 0.25, 0.15, 0.12, 0.08]))
    return logits


def test_top_p_draws_follow_the_distribution_and_never_pick_a_removed_token():
    logits, p = _spread_logits(), SamplingParams(temperature=1.0, top_p=0.9)
    probs, kept = distribution(logits[0], p)
    assert sorted(kept.nonzero()[:, 0].tolist()) == [10, 500, 1500, 2100]
    generator = new_generator(3)
    counts = torch.bincount(torch.cat([choose(logits, p, generator)[:, 0] for _ in range(4000)]), minlength=3000)
    assert int(counts.sum() - counts[kept].sum()) == 0
    expected = probs[kept].double() * 4000
    chi2 = float(((counts[kept] - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # 3 degrees of freedom: p = 0.001


def test_a_top_p_draw_rounded_up_to_the_total_takes_the_last_kept_token(monkeypatch):
    from pipelines import sampling

    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.ones(shape))
    p = SamplingParams(temperature=1.0, top_p=0.7)  # keeps tokens 10, 500 and 1500: the last block has none
    assert int(sampling.choose(_spread_logits(), p, new_generator(0))) == 1500


def _float32_neighbours(values: list[float]) -> torch.Tensor:
    """Each value and the float32 numbers just below and above it."""
    exact = torch.tensor(values, dtype=torch.float32)
    return torch.cat([exact, torch.nextafter(exact, torch.zeros(())), torch.nextafter(exact, torch.ones(()) * 2)])


@pytest.mark.parametrize("top_p", [0.05, 0.2, 0.5, 0.8, 0.95])
def test_weights_on_the_bins_edges_are_kept_as_a_full_sort_keeps_them(top_p):
    """The bins are cut from the weights' float32 bits; weights on a bin's edges (powers of two and 1/32 steps
    between them) and one float away on either side land on the right side of the top-p line."""
    from pipelines.top_p import _kept

    edges = [2.0 ** -k * (1 + j / 32) for k in range(1, 12) for j in range(0, 32, 5)]
    weights = _float32_neighbours(edges).clamp(max=1.0)
    weights = torch.cat([torch.ones(1), weights, torch.full((40,), 2.0 ** -6)])  # the top token and ties
    weights = weights[torch.randperm(len(weights), generator=torch.Generator().manual_seed(9))]
    kept = _kept(weights, top_p)
    assert kept is not None and torch.equal(kept[kept > 0], weights[kept > 0])  # kept tokens keep their weight
    ordered = weights.double().sort(descending=True).values
    room = int(((ordered.cumsum(0) - ordered) <= top_p * ordered.sum()).sum())  # how many a full sort keeps
    assert int((kept > 0).sum()) == room
    assert float(weights[kept > 0].min()) >= float(weights[kept == 0].max())  # the most likely ones


def test_the_edge_bins_tokens_are_found_in_few_blocks_or_anywhere():
    from pipelines.top_p import DRAW_BLOCK, _nonzero

    size = 40 * DRAW_BLOCK + 333  # whole blocks and a tail
    for where in ([5, 7, 3 * DRAW_BLOCK + 1, size - 1], [40 * DRAW_BLOCK], list(range(0, size, 97)), []):
        values = torch.zeros(size)
        values[where] = 0.25
        assert _nonzero(values).tolist() == where


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("top_p", [0.3, 0.9])
def test_top_p_on_a_gpu_keeps_what_it_keeps_on_the_cpu_and_draws_from_it(top_p):
    """The float32 bins and float64 sums of ``top_p.py`` on CUDA: the same set (up to a token whose exp rounds
    across the top-p line), and each draw a kept token."""
    rows = torch.cat([_logits(11, True), _logits(12, False)])
    on_cpu, on_gpu = nucleus(rows, top_p), nucleus(rows.cuda(), top_p).cpu()
    assert all(int(n) <= 1 for n in (on_cpu != on_gpu).sum(-1))
    generator = new_generator(5, "cuda")
    for _ in range(20):
        drawn = choose(rows.cuda(), SamplingParams(temperature=1.0, top_p=top_p), generator)
        assert drawn.is_cuda and all(bool(on_gpu[r, t]) for r, t in enumerate(drawn[:, 0].tolist()))
