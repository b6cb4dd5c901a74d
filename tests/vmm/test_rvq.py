import mlx.core as mx
import numpy as np

from meqg_mlx.vmm.rvq import ResidualVQ, RVQArgs


def unit_clusters(n=2048, dim=16, clusters=32, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.1 * rng.standard_normal((n, dim))
    return mx.array((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))


def quantization_error(rvq, x):
    codes, _ = rvq.encode(x)
    return float(((rvq.decode(codes) - x) ** 2).sum(-1).mean())


def test_ema_training_lowers_error_and_more_levels_help():
    mx.random.seed(0)
    x = unit_clusters()
    rvq = ResidualVQ(RVQArgs(dim=16, levels=3, codes=32, decay=0.8))
    before = quantization_error(rvq, x)
    for step in range(30):
        rvq.update(x, seed=step)
    after = quantization_error(rvq, x)
    assert after < 0.5 * before
    codes, _ = rvq.encode(x)
    partial = sum(rvq.codebooks[k][codes[:, k]] for k in range(2))
    assert float(((partial - x) ** 2).sum(-1).mean()) > after  # the third level still reduces error


def test_data_initialized_codebooks_use_most_codes():
    x = unit_clusters(n=2048, clusters=64)
    random_init, data_init = (ResidualVQ(RVQArgs(dim=16, levels=2, codes=32)) for _ in range(2))
    data_init.initialize(x, seed=0)
    for rvq in (random_init, data_init):
        for step in range(5):
            rvq.update(x, seed=step)
    used = [(np.array(rvq.usage(rvq.encode(x)[0])[0]) > 0).sum(axis=1) for rvq in (random_init, data_init)]
    assert (used[1] >= 28).all() and used[1].sum() > used[0].sum()
    assert quantization_error(data_init, x) < quantization_error(random_init, x)


def test_dead_codes_are_reseeded_with_fresh_ids():
    mx.random.seed(1)
    x = unit_clusters(n=256)
    rvq = ResidualVQ(RVQArgs(dim=16, levels=2, codes=16, decay=0.5, dead_threshold=0.05))
    rvq.codebooks = mx.concatenate([rvq.codebooks[:, :8], 100 + rvq.codebooks[:, 8:]], axis=1)  # 8 unreachable
    rvq.embed_sum = mx.array(rvq.codebooks)
    old_ids = np.array(rvq.code_ids)
    recycled = sum(rvq.update(x, seed=s) for s in range(6))
    ids = np.array(rvq.code_ids)
    assert recycled >= 8
    changed = ids != old_ids
    assert changed.sum() == recycled and ids[changed].min() >= old_ids.max() + 1
    assert len(np.unique(ids)) == ids.size and rvq.next_code_id == old_ids.size + recycled
    assert float(np.abs(np.array(rvq.codebooks[0, 8:])).max()) < 50  # re-seeded near the data


def test_usage_and_perplexity():
    rvq = ResidualVQ(RVQArgs(dim=4, levels=2, codes=4))
    codes = mx.array([[0, 1], [1, 1], [2, 1], [3, 1]])
    counts, perplexity = rvq.usage(codes)
    assert np.array(counts).tolist() == [[1, 1, 1, 1], [0, 4, 0, 0]]
    assert np.allclose(np.array(perplexity), [4.0, 1.0], atol=1e-4)


def test_straight_through_quantizer_passes_gradients_and_codebooks_are_frozen():
    import mlx.nn as nn

    rvq = ResidualVQ(RVQArgs(dim=8, levels=2, codes=8))
    assert nn.utils.tree_flatten(rvq.trainable_parameters()) == []
    x = mx.random.normal((5, 8))
    grad = mx.grad(lambda v: (rvq(v)[0] ** 2).sum())(x)
    assert float(mx.abs(grad).sum()) > 0
