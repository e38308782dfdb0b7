"""Reusing the KV cache of earlier requests whose tokens begin a new prompt (a chat's previous turns).

Each turn of a chat sends the whole conversation again; without reuse, its first token waits for the
prefill of every earlier turn (Qwen2.5-0.5B, int8, 2 cores: 3.5 s for 2 000 tokens). When a request
leaves the decode loop its keys and values are kept here, with the tokens they belong to, within a
budget of ``MODELDECK_PREFIX_CACHE_TOKENS`` (default 16 384 tokens, about 400 MB for Qwen2.5-0.5B;
0 turns reuse off); the least recently used go first. A new prompt that starts with enough of a kept
sequence is prefilled from where they part.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from . import settings

MIN_SHARED_TOKENS = 32  # below this a fresh prefill costs about the same


def budget() -> int:
    """Tokens of keys and values kept for reuse (``MODELDECK_PREFIX_CACHE_TOKENS``; 0: off)."""
    return settings.get("MODELDECK_PREFIX_CACHE_TOKENS")


@dataclass
class Entry:
    tokens: list[int]
    layers: list[tuple[Any, Any]]  # per layer: keys and values, (1, heads, len(tokens), head size)


def shared_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` have in common."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    """Kept key/value sequences, least recently used first out. Used by the engine thread only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()
        self.tokens = 0
        self.hits = 0
        self._next = 0

    def store(self, tokens: list[int], layers: list[tuple[Any, Any]]) -> None:
        """Keep ``layers`` (the keys and values of ``tokens``), dropping kept ones it makes redundant."""
        if len(tokens) < MIN_SHARED_TOKENS or len(tokens) > self.capacity or not layers:
            return
        for key, entry in list(self.entries.items()):  # a longer continuation replaces its own start
            if shared_length(entry.tokens, tokens) == len(entry.tokens):
                self._drop(key)
        while self.tokens + len(tokens) > self.capacity:
            self._drop(next(iter(self.entries)))
        self.entries[self._next] = Entry(list(tokens), layers)
        self._next += 1
        self.tokens += len(tokens)

    def match(self, prompt: list[int]) -> tuple[int, Entry | None]:
        """The kept entry sharing the longest start with ``prompt`` (at least one token left to prefill)."""
        best, found = 0, None
        for key, entry in self.entries.items():
            shared = min(shared_length(entry.tokens, prompt), len(prompt) - 1)
            if shared > best:
                best, found = shared, key
        if found is None or best < MIN_SHARED_TOKENS:
            return 0, None
        self.entries.move_to_end(found)
        self.hits += 1
        return best, self.entries[found]

    def _drop(self, key: int) -> None:
        self.tokens -= len(self.entries.pop(key).tokens)
