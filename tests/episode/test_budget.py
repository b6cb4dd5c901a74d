import time

import pytest

from meqg_mlx.episode.budget import Budget, BudgetMeter
from meqg_mlx.errors import InputError


def test_meter_refuses_the_step_that_would_overrun_before_it_is_taken():
    meter = BudgetMeter(Budget(seconds=10, max_flops=1000, max_kv_bytes=100))
    for _ in range(3):
        assert meter.refuse(300, 50, 0.0) is None
        meter.charge(300, 50)
    assert meter.refuse(300, 50, 0.0) == "max_flops" and meter.flops == 900 <= 1000
    assert meter.refuse(10, 101, 0.0) == "max_kv_bytes"
    assert meter.report()["stopped_by"] == "max_kv_bytes"


def test_meter_counts_wall_seconds_including_the_next_step():
    meter = BudgetMeter(Budget(seconds=0.2))
    assert meter.refuse(0, 0, 0.1) is None
    time.sleep(0.15)
    assert meter.refuse(0, 0, 0.1) == "seconds"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"seconds": 0}, "budget seconds must be a positive"),
        ({"max_flops": float("nan")}, "budget max_flops must be a positive"),
        ({"seconds": "1"}, "budget seconds must be a positive"),
        ({"tokens": 3}, "unknown budget key 'tokens'"),
        ([1, 2], "budget must be an object"),
    ],
)
def test_bad_budgets_are_one_line_errors(data, message):
    with pytest.raises(InputError, match=message):
        Budget.from_dict(data)
