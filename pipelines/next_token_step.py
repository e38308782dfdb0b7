"""Step mode of the next-token explorer: draw the next token as text generation would, or name a clicked one.

A sampled step draws with ``sampling.choose`` from a generator that carries over between steps (its state
travels in ``Step.rng``), so stepping with a seed writes what text generation writes with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import registry
from .engine import engine
from .inputs import seed as parse_seed
from .next_token import appended_ids, explorer, fitted, local_model, prompt_ids, settings
from .sampling import SamplingParams, choose, distribution, new_generator, resolve_seed
from .tokens import readable


@dataclass
class Step:
    """One token appended by sampling: its rank (1 = most likely before the settings) and why it was chosen."""

    id: int
    token: str
    raw_p: float
    p: float
    rank: int
    seed: int | None
    rng: bytes | None = field(repr=False)  # the generator's state after this draw: pass it back to continue
    reason: str


def _draw(loaded: registry.LoadedModel, ids: list[int], params: SamplingParams, seed: int | None,
          rng: bytes | None) -> Step:
    import torch

    state = explorer(loaded)
    logits = state.logits(ids)
    generator, greedy = None, params.temperature <= 0
    if not greedy:
        generator = new_generator(seed, logits.device)
        if rng:
            generator.set_state(torch.frombuffer(bytearray(rng), dtype=torch.uint8))
    token = int(choose(logits[None], params, generator, torch.tensor([ids], device=logits.device))[0, 0])
    raw = state.before(ids)[0]
    after, _ = distribution(logits, params, torch.tensor(ids, device=logits.device))
    rank = int((raw > raw[token]).sum()) + 1
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    state = None if greedy else bytes(generator.get_state().tolist())
    return Step(token, readable(tokenizer, token), float(raw[token]), float(after[token]), rank,
                seed, state, _reason(rank, float(after[token]), float(after.max()), greedy))


def _reason(rank: int, p: float, best: float, greedy: bool) -> str:
    if greedy:
        return "温度为 0：总是选概率最高的词。 / Temperature 0: the most likely token is always chosen."
    if rank == 1:
        return (f"抽中了最可能的词（设置后概率 {p:.1%}）。 / The most likely token was drawn "
                f"(probability after the settings: {p:.1%}).")
    return (f"采样是按概率抽签，不是选最大值：这个词排第 {rank}，设置后概率 {p:.1%}；最可能的词也只有 {best:.1%} 的机会被抽中。 / "
            f"Sampling draws by probability, it does not take the maximum: this token ranks {rank} with "
            f"{p:.1%} after the settings; even the most likely one is drawn only {best:.1%} of the time.")


def sample_step(prompt: str, model: str | None = None, *, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0, repetition_penalty: float = 1.0, appended: list[int] | None = None,
                seed: int | None = None, rng: bytes | None = None) -> Step:
    """Draw the token after ``prompt`` + ``appended`` as text generation would with ``seed``.

    Pass the previous ``Step.rng`` to continue one seeded sequence: the tokens then match text
    generation's with that seed and these settings, token for token.
    """
    notices: list[str] = []
    loaded, ids, _ = prompt_ids(prompt, model, notices)
    params = settings(temperature, top_k, top_p, repetition_penalty, notices)
    used = None if params.temperature <= 0 else resolve_seed(parse_seed(seed))
    return engine.call(_draw, loaded, fitted(loaded, ids + appended_ids(appended, loaded), notices), params, used, rng)


def token_label(model: str | None, token_id: int) -> str:
    """The readable text of token ``token_id`` of the local model ``model`` (a candidate clicked in the chart)."""
    loaded, _, _ = local_model(model)
    [checked] = appended_ids([token_id], loaded)
    return readable(getattr(loaded.processor, "tokenizer", loaded.processor), checked)
