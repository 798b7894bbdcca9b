"""Text contexts of recent prompts kept in memory, so a repeated prompt skips the text encoder."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from marble.inference.live_state import live_state
from marble.text.encoders import check_prompts

DEFAULT_CAPACITY = 256  # contexts are (L, D) = 32 × 192 floats, 24 KiB each: 6 MiB when full


class ContextCache:
    """Least-recently-used map prompt → context (L, D) in front of a TextEncoder's encode().

    Forgets everything when the encoder's weights or LoRA scales change, so a rescaled adapter never
    meets a context encoded before it."""

    def __init__(self, encoder, capacity: int = DEFAULT_CAPACITY):
        self.encoder = encoder
        self.capacity = capacity
        self._contexts: OrderedDict[str, Tensor] = OrderedDict()
        self._lock = threading.Lock()  # the server's worker threads share one pipeline per model
        self._encoder_state = live_state(encoder)
        self.hits = 0
        self.misses = 0

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """(n, L, D) contexts of `prompts`; the ones not cached are encoded together in one batch."""
        check_prompts(prompts)
        with self._lock:
            state = live_state(self.encoder)
            if state != self._encoder_state:
                self._contexts.clear()
                self._encoder_state = state
            missing = list(dict.fromkeys(p for p in prompts if p not in self._contexts))
            if missing:
                for prompt, context in zip(missing, self.encoder.encode(missing).context):
                    self._contexts[prompt] = context.clone()
            self.misses += len(missing)
            self.hits += len(prompts) - len(missing)
            contexts = [self._use(prompt) for prompt in prompts]
            while len(self._contexts) > self.capacity:
                self._contexts.popitem(last=False)
        return torch.stack(contexts)

    def _use(self, prompt: str) -> Tensor:
        self._contexts.move_to_end(prompt)
        return self._contexts[prompt]

    def clear(self) -> None:
        """Forget every context: call after changing the text encoder's weights."""
        with self._lock:
            self._contexts.clear()

    def __len__(self) -> int:
        return len(self._contexts)
