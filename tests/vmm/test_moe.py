import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.vmm.moe import MoEFeedForward


def dense_reference(moe, x, prior=None):
    """Every token through its top-k experts by explicit loops, in numpy float64: routing included,
    so nothing of MoEFeedForward's own code (route, dispatch) is in the reference."""
    flat = np.array(x, np.float64).reshape(-1, x.shape[-1])
    weights = {k: np.array(v, np.float64) for k, v in nn.utils.tree_flatten(moe.parameters())}
    logits = flat @ weights["router.weight"].T + weights.get("router.bias", 0.0)
    if prior is not None:
        logits = logits + float(moe.beta) * np.array(prior, np.float64).reshape(flat.shape[0], -1)
    gate_w, up_w, down_w = weights["experts.gate"], weights["experts.up"], weights["experts.down"]
    rows = []
    for n, token in enumerate(flat):
        chosen = np.argsort(-logits[n], kind="stable")[: moe.top_k]
        gates = np.exp(logits[n, chosen] - logits[n, chosen].max())
        gates /= gates.sum()
        total = np.zeros(flat.shape[1])
        for i, g in zip(chosen, gates):
            pre = gate_w[i] @ token
            total += g * (down_w[i] @ ((pre / (1 + np.exp(-pre))) * (up_w[i] @ token)))
        rows.append(total)
    return mx.array(np.stack(rows).reshape(x.shape).astype(np.float32))


def test_gathered_dispatch_equals_explicit_loops():
    mx.random.seed(0)
    moe = MoEFeedForward(d_model=16, d_ff=32, n_experts=6, top_k=2)
    x = mx.random.normal((3, 5, 16))
    y, stats = moe(x)
    assert float(mx.abs(y - dense_reference(moe, x)).max()) < 1e-5
    assert int(stats.load.sum()) == 3 * 5 * 2
    assert 0 < float(stats.entropy) <= np.log(6) + 1e-6


@pytest.mark.parametrize("segmented", [True, False], ids=["cpu-segments", "gather_mm"])
def test_both_dispatch_paths_equal_the_loops_and_each_other_in_gradient(segmented):
    mx.random.seed(4)
    moe = MoEFeedForward(d_model=16, d_ff=32, n_experts=6, top_k=2)
    x = mx.random.normal((40, 16))
    prior = mx.broadcast_to(mx.array([0.0] * 5 + [-100.0]), (40, 6))  # expert 5 gets no token

    def loss(model, segmented):
        _, indices, gates = model.route(x, prior)
        return ((model.experts(x, indices, segmented) * gates[..., None]).sum(1) ** 2).sum()

    _, indices, gates = moe.route(x, prior)
    assert 5 not in np.array(indices)
    y = (moe.experts(x, indices, segmented) * gates[..., None]).sum(1)
    assert float(mx.abs(y - dense_reference(moe, x, prior)).max()) < 1e-5
    grads = dict(nn.utils.tree_flatten(nn.value_and_grad(moe, loss)(moe, segmented)[1]))
    other = dict(nn.utils.tree_flatten(nn.value_and_grad(moe, loss)(moe, not segmented)[1]))
    for name, grad in grads.items():
        assert float(mx.abs(grad - other[name]).max()) < 1e-4 * (float(mx.abs(grad).max()) + 1e-6), name
    assert float(mx.abs(grads["experts.gate"][5]).max()) == 0.0


def test_balance_loss_is_one_when_uniform_and_grows_when_collapsed():
    mx.random.seed(1)
    moe = MoEFeedForward(d_model=8, d_ff=8, n_experts=4, top_k=1)
    moe.router.weight = mx.zeros_like(moe.router.weight)
    x = mx.random.normal((64, 8))
    prior = mx.eye(4)[mx.arange(64) % 4] * 50.0  # routes token n to expert n % 4 ...
    _, balanced = moe(x, prior)
    assert np.array(balanced.load).tolist() == [16, 16, 16, 16]
    assert float(balanced.balance_loss) == pytest.approx(1.0, abs=1e-3)
    _, collapsed = moe(x, mx.broadcast_to(mx.eye(4)[0] * 50.0, (64, 4)))  # ... or all to expert 0
    assert np.array(collapsed.load).tolist() == [64, 0, 0, 0]
    assert float(collapsed.balance_loss) == pytest.approx(4.0, abs=1e-3)


def test_domain_prior_steers_routing_with_beta():
    mx.random.seed(2)
    x = mx.random.normal((32, 8))
    prior = mx.broadcast_to(mx.array([0.0, 0.0, 1.0, 0.0]), (32, 4))
    weak = MoEFeedForward(d_model=8, d_ff=8, n_experts=4, top_k=1, beta=0.0)
    strong = MoEFeedForward(d_model=8, d_ff=8, n_experts=4, top_k=1, beta=100.0)
    strong.update(weak.parameters())
    assert int(weak(x, prior)[1].load[2]) < 32
    assert int(strong(x, prior)[1].load[2]) == 32


def test_gradients_reach_router_and_experts():
    mx.random.seed(3)
    moe = MoEFeedForward(d_model=8, d_ff=16, n_experts=4, top_k=2)
    x = mx.random.normal((10, 8))

    def loss(model):
        y, stats = model(x)
        return (y**2).mean() + 0.01 * stats.balance_loss

    _, grads = nn.value_and_grad(moe, loss)(moe)
    flat = dict(nn.utils.tree_flatten(grads))
    for name in ("router.weight", "experts.gate", "experts.up", "experts.down"):
        assert np.isfinite(np.array(flat[name])).all() and float(mx.abs(flat[name]).sum()) > 0


def test_bad_top_k():
    with pytest.raises(ValueError, match="top_k"):
        MoEFeedForward(8, 8, n_experts=4, top_k=5)
