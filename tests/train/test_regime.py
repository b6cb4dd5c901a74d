from meqg_mlx.config import RegimeConfig
from meqg_mlx.train.regime import RecoveryPolicy, regime_of


def test_regime_bands():
    config = RegimeConfig()
    assert [regime_of(p, config) for p in (0.0, 0.449, 0.45, 0.8, 0.81, 1.0)] == [
        "linear",
        "linear",
        "geometric",
        "geometric",
        "breakdown",
        "breakdown",
    ]


def test_breakdown_escalates_cooldown_revert_perturb_then_calm_restores_the_lr():
    policy = RecoveryPolicy(RegimeConfig(revert_after=2, perturb_after=3, restore_after=2, min_lr_scale=0.25))
    assert policy.observe(0.5) == (True, [])
    assert policy.observe(0.9) == (True, ["cooldown"]) and policy.lr_scale == 0.5
    assert policy.observe(0.9) == (False, ["cooldown", "revert"]) and policy.lr_scale == 0.25
    assert policy.observe(0.95) == (False, ["perturb"]) and policy.streak == 0  # LR already at its floor
    assert policy.observe(0.3) == (True, [])
    assert policy.observe(0.3) == (False, ["restore_lr"]) and policy.lr_scale == 1.0
    restored = RecoveryPolicy()
    restored.load_state(policy.state())
    assert restored.state() == policy.state()
