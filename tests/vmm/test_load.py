import dataclasses

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import WEIGHTS
from meqg_mlx.vmm.load import load_model
from meqg_mlx.vmm.model import VMM

from .test_model import TINY, unit


def saved(tmp_path, args=TINY, seed=3):
    mx.random.seed(seed)
    model = VMM(args)
    model.save_weights(str(tmp_path / WEIGHTS))
    return model


def test_a_loaded_model_predicts_what_the_saved_one_did(tmp_path):
    x = unit((2, 5, TINY.concept_dim), seed=4)
    original = saved(tmp_path)
    mx.random.seed(11)  # a different initialisation, which loading must overwrite everywhere
    loaded = load_model(tmp_path, TINY)
    np.testing.assert_array_equal(np.array(loaded(x).next_vector), np.array(original(x).next_vector))


@pytest.mark.parametrize("defect", ["cut in half", "another shape", "missing"])
def test_a_checkpoint_that_does_not_fit_is_a_one_line_error(tmp_path, defect):
    saved(tmp_path)
    weights = tmp_path / WEIGHTS
    args = TINY
    if defect == "cut in half":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif defect == "another shape":
        args = dataclasses.replace(TINY, d_model=48)
    else:
        weights.unlink()
    with pytest.raises(MeqgError, match=f"corrupt checkpoint {tmp_path}") as error:
        load_model(tmp_path, args)
    assert "\n" not in str(error.value)
