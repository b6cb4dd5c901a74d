"""Phi regimes and the recovery policy for breakdown (docs/design.md, Regimes).

Phi < phi_geometric is the linear regime, up to phi_breakdown geometric, above it
breakdown: the planner's code levels are so coupled that the finest view loses
almost all the information it could. Phi is only measured, never optimized (seed
004 saw mode collapse when it was). In breakdown the policy acts in escalating
steps, counted in consecutive breakdown measurements: cool the learning rate down
at every one, revert to the last stable checkpoint at `revert_after`, perturb the
weights at `perturb_after` (and start counting again). After `restore_after` calm
measurements the learning rate returns to its schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import RegimeConfig


def regime_of(phi: float, config: RegimeConfig) -> str:
    if phi > config.phi_breakdown:
        return "breakdown"
    return "geometric" if phi >= config.phi_geometric else "linear"


@dataclass
class RecoveryPolicy:
    config: RegimeConfig = field(default_factory=RegimeConfig)
    regime: str | None = None
    streak: int = 0  # consecutive breakdown measurements
    calm: int = 0  # consecutive other measurements while the LR is cooled down
    lr_scale: float = 1.0

    def observe(self, phi: float) -> tuple[bool, list[str]]:
        """Record one Phi measurement: (did the regime change, actions to take now)."""
        cfg = self.config
        regime = regime_of(phi, cfg)
        changed, self.regime = regime != self.regime, regime
        actions: list[str] = []
        if regime == "breakdown":
            self.streak, self.calm = self.streak + 1, 0
            if self.lr_scale > cfg.min_lr_scale:
                self.lr_scale = max(self.lr_scale * cfg.cooldown_factor, cfg.min_lr_scale)
                actions.append("cooldown")
            if self.streak == cfg.revert_after:
                actions.append("revert")
            if self.streak >= cfg.perturb_after:
                actions.append("perturb")
                self.streak = 0
        else:
            self.streak = 0
            if self.lr_scale < 1.0:
                self.calm += 1
                if self.calm >= cfg.restore_after:
                    self.lr_scale, self.calm = 1.0, 0
                    actions.append("restore_lr")
        return changed, actions

    def state(self) -> dict:
        return {"regime": self.regime, "streak": self.streak, "calm": self.calm, "lr_scale": self.lr_scale}

    def load_state(self, state: dict) -> None:
        self.regime, self.streak, self.calm, self.lr_scale = (
            state["regime"],
            state["streak"],
            state["calm"],
            state["lr_scale"],
        )
