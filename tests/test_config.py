import re

import pytest

from meqg_mlx.config import MeqgConfig, load_config, save_config
from meqg_mlx.errors import ConfigError


def test_defaults_are_the_seed_values():
    config = MeqgConfig()
    assert (config.gate.alpha, config.gate.trust_radius, config.gate.l_mod) == (0.1, 0.02, 5.0)
    assert config.objective.lambda_mod == 0.5
    assert (config.objective.lambda_kv, config.objective.lambda_flop) == (1e-9, 5e-13)
    assert (config.objective.lambda_lat, config.objective.lambda_sparse) == (1e-3, 0.05)


def test_yaml_round_trip(tmp_path):
    config = MeqgConfig()
    config.gate.alpha = 0.2
    config.vmm.n_experts = 4
    path = tmp_path / "c.yaml"
    save_config(config, path)
    assert load_config(path) == config


def test_partial_file_keeps_defaults_and_int_is_accepted_for_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gate:\n  trust_radius: 1\n")
    config = load_config(path)
    assert config.gate.trust_radius == 1.0 and isinstance(config.gate.trust_radius, float)
    assert config.gate.alpha == 0.1


@pytest.mark.parametrize(
    "text, message",
    [
        ("gate:\n  alpah: 0.1\n", "unknown config key 'gate.alpah'"),
        ("gatee:\n  alpha: 0.1\n", "unknown config key 'gatee'"),
        ("gate:\n  alpha: fast\n", "config key 'gate.alpha' expects float, got str"),
        ("vmm:\n  n_experts: 2.5\n", "config key 'vmm.n_experts' expects int, got float"),
        ("vmm:\n  n_experts: true\n", "config key 'vmm.n_experts' expects int, got bool"),
        ("gate: 3\n", "'gate.' must be a mapping"),
        ("gate:\n  alpha: .nan\n", "config key 'gate.alpha' must be finite"),
        ("gate: [\n", "is not valid YAML"),
        ("store:\n  storage_options: [1]\n", "config key 'store.storage_options' expects a mapping"),
        ("store:\n  storage_options:\n    region: [a]\n", "holds a value that is not a string"),
        ("store:\n  lock_lease_s: 0.1\n", "config key 'store.lock_lease_s' must be in [1, 3600]"),
        # shapes and sizes fail here, in one line, before a model or a run directory exists
        ("train:\n  batch_size: 0\n", "config key 'train.batch_size' must be in [1, 65536], got 0"),
        (
            "vmm:\n  d_model: 100\n  head_dim: 64\n",
            "vmm.expand x vmm.d_model (200) must be a multiple of vmm.head_dim (64)",
        ),
        ("vmm:\n  top_k: 5\n", "vmm.top_k (5) must be at most vmm.n_experts (4)"),
        ("inverter:\n  hidden: 100\n  heads: 6\n", "inverter.hidden (100) must be a multiple of inverter.heads (6)"),
        ("train:\n  validation_fraction: 0.0\n", "config key 'train.validation_fraction' must be in"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_storage_options_are_strings_as_lancedb_takes_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  storage_options:\n    aws_endpoint: http://127.0.0.1:9000\n    allow_http: true\n")
    options = load_config(path).store.storage_options
    assert options == {"aws_endpoint": "http://127.0.0.1:9000", "allow_http": "true"}
    assert load_config(path) == load_config(path) and MeqgConfig().store.storage_options == {}


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_a_saved_run_means_what_it_meant_before_a_key_existed(tmp_path):
    """A run saved before the generating head and the relation input loads as the model it trained: a
    copy-only head reading `next` alone; a run that names them keeps its values; a new config gets the
    defaults."""
    from meqg_mlx.config import RUN_KEYS_BEFORE

    old = tmp_path / "old.yaml"
    old.write_text("vmm: {d_model: 64}\n")
    config = load_config(old, RUN_KEYS_BEFORE)
    assert (config.vmm.next_generator, config.vmm.relations, config.vmm.d_model) == (False, ["next"], 64)
    new = tmp_path / "new.yaml"
    new.write_text("vmm: {next_generator: true, relations: [next, hypernym]}\n")
    assert load_config(new, RUN_KEYS_BEFORE).vmm.relations == ["next", "hypernym"]
    assert load_config(old).vmm.next_generator is True and load_config(old).vmm.relations == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("vmm: {relations: next}\n")
    with pytest.raises(ConfigError, match="config key 'vmm.relations' expects a list of names"):
        load_config(bad)
