"""Learning-rate schedules: linear warmup, then cosine decay (the VMM trainer and the inverter use it)."""

from __future__ import annotations

import mlx.optimizers as optim


def warmup_cosine(peak: float, warmup: int, decay_steps: int, start: float = 0.0, end: float = 0.0):
    """`start` -> `peak` linearly over `warmup` steps, then cosine from `peak` to `end` over `decay_steps`."""
    decay = optim.cosine_decay(peak, max(decay_steps, 1), end)
    if warmup <= 0:
        return decay
    return optim.join_schedules([optim.linear_schedule(start, peak, warmup), decay], [warmup])
