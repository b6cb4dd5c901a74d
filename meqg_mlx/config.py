"""Dataclass configs with the seed defaults, read from and written to YAML.

Unknown keys and wrongly typed values are errors that name the key, so a typo
in a config file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import write_text
from .errors import ConfigError
from .runs import RunDir
from .inversion.inverter import ModelArgs as InverterArgs
from .vmm.model import ModelArgs


@dataclass
class GateConfig:
    """Null-Stability Gate (docs/design.md, Gate): Armijo, trust region, KL-smoothness."""

    alpha: float = 0.1
    trust_radius: float = 0.02
    l_mod: float = 5.0
    max_backtracks: int = 3
    backtrack_factor: float = 0.5
    check_interval: int = 1


@dataclass
class ObjectiveConfig:
    """Weights of Delta = S_geo + S_ent + lambda_mod * S_mod (docs/design.md, Objective)."""

    lambda_mod: float = 0.5
    lambda_kv: float = 1e-9
    lambda_flop: float = 5e-13
    lambda_lat: float = 1e-3
    lambda_sparse: float = 0.05
    lambda_kappa: float = 0.0


@dataclass
class StoreConfig:
    """Concept store ingest and search."""

    commit_rows: int = 1024
    embed_batch_size: int = 64
    max_tokens: int = 128
    n_domains: int = 16
    exact_search_max_rows: int = 50_000
    ann_target_recall: float = 0.98
    disk_index_min_rows: int = 2_000_000  # from here on a LanceDB IVF_RQ index on disk (disk_index.py)
    doctests: bool = True  # run the stdlib's doctests in the OS sandbox; false records validation "none"
    doctest_timeout_s: float = 20.0
    doctest_memory_mb: int = 1024
    # object stores (s3://): LanceDB's storage options, over the AWS_* environment (endpoint, region, keys)
    storage_options: dict[str, str] = field(default_factory=dict)
    lock_lease_s: float = 30.0  # an S3 write lock unrenewed this long is taken over (its holder died)


@dataclass
class TrainConfig:
    """Gated training of the VMM on concept sequences from a store."""

    steps: int = 4000
    batch_size: int = 16
    seq_len: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    gate: bool = True
    store_negatives: int = 256
    temperature: float = 0.05
    ledger_positions: int = 2
    ledger_samples: int = 32
    ledger_inner: int = 8
    rvq_fit_steps: int = 40
    eval_every: int = 1000
    validation_windows: int = 64
    validation_edges: int = 1000  # held-out edges per relation in the validation tables
    baseline_mlp_steps: int = 400  # the MLP baseline's training steps (batches of 256 pairs)
    # relation walks (corpus/relations.py) beside documents: the share of batches that are walks (all of
    # them when the store has no documents), their length in steps, and the relations they follow ([]: all)
    walk_share: float = 0.5
    walk_length: int = 4
    walk_relations: list[str] = field(default_factory=list)
    validation_fraction: float = 0.1
    checkpoint_every: int = 500
    phi_every: int = 5
    kappa_every: int = 250
    kappa_iterations: int = 4
    seed: int = 0
    # forward-equivalents training steps may spend (a forward 1, its backward 2; gate checks are forwards):
    # 0 trains for `steps`; otherwise training stops at `steps` or here, whichever comes first
    compute: float = 0.0


@dataclass
class RegimeConfig:
    """Phi regimes (docs/design.md, Regimes) and the recovery policy for breakdown, counted in Phi measurements."""

    phi_geometric: float = 0.45
    phi_breakdown: float = 0.80
    cooldown_factor: float = 0.5
    min_lr_scale: float = 0.0625
    revert_after: int = 3
    perturb_after: int = 6
    perturb_scale: float = 0.01
    restore_after: int = 10


@dataclass
class EncoderConfig:
    """Text -> concept vectors."""

    backend: str = "auto"  # auto (the faster here: `meqg doctor` says which) | mlx | torch (sentence-transformers)
    model: str = ""  # a local sentence-transformers directory; "" is the bundled all-MiniLM-L6-v2
    dtype: str = "float32"  # float32 | float16 | bfloat16 (mlx backend)


@dataclass
class InversionConfig:
    """Vectors back to text."""

    lookup_threshold: float = 0.9  # cosine a store concept needs for its text to stand for a vector
    # inverter training (meqg inverter train)
    steps: int = 2100  # <= 60 min on 2 x86 cores for the demo store (stdlib + WordNet animals and foods)
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    held_out_every: int = 20  # concepts with id % this == 0 are never trained on (bench/inversion.py's)
    eval_every: int = 250
    # every own_hypotheses_every steps, this many training texts get the inverter's own first-pass
    # output (re-embedded) as a hypothesis: the near misses the corrector loop will really see
    own_hypotheses: int = 0
    own_hypotheses_every: int = 250
    # corrector loop: hypotheses re-embedded, the best by cosine kept
    correction_steps: int = 4
    candidates: int = 4  # per step and hypothesis: one greedy, the rest sampled
    beam: int = 1  # hypotheses kept from one step to the next (the closest distinct texts)
    temperature: float = 0.7
    target_cosine: float = 0.99  # stop correcting a vector once its best text is this close
    seed_with_nearest: bool = True  # correction starts from the nearest store text when it is closer
    write_back: bool = False  # add inverted texts within target_cosine to the store (source=inversion)
    # pretrained vec2text in place of the run's inverter: the store needs a vector column from the
    # vec2text embedder (`meqg store add-vectors`) and a projection to it (`meqg store project`)
    vec2text_inverter: str = ""  # vec2text inversion checkpoint directory
    vec2text_corrector: str = ""  # its corrector checkpoint directory (optional)
    vec2text_embedder: str = ""  # the sentence-transformers directory it inverts (gtr-t5-base)
    vec2text_column: str = ""  # the store's vector column of that embedder's vectors
    vec2text_num_beams: int = 1  # sequence beam width of vec2text's greedy passes (its paper: 8)


@dataclass
class EpisodeConfig:
    """A Diamond episode: concept steps gated like training steps, on the concept trajectory."""

    max_steps: int = 8
    trust_radius: float = 1.0  # longest accepted step ||x_next - x_last|| (chord; 1.0 is cosine 0.5)
    retrieve_k: int = 2  # store concepts near the last one put in the context as view slots
    converge_cosine: float = 0.995  # a step this close to the last concept ends the episode
    ledger_samples: int = 32
    ledger_inner: int = 8
    max_prompt_chars: int = 8000
    gate: bool = True  # false: every finite step is accepted unchecked (the no-gate ablation of `meqg eval`)


@dataclass
class MeqgConfig:
    gate: GateConfig = field(default_factory=GateConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    vmm: ModelArgs = field(default_factory=ModelArgs)  # the model file's own ModelArgs
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    inverter: InverterArgs = field(default_factory=InverterArgs)  # the inverter model file's ModelArgs
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)

    def __post_init__(self):
        """Shapes that must fit together (each key's own range is checked where it is read), so a bad
        config fails in one line before anything is built."""
        vmm, inverter = self.vmm, self.inverter
        if (vmm.expand * vmm.d_model) % vmm.head_dim:
            raise ConfigError(
                f"vmm.expand x vmm.d_model ({vmm.expand * vmm.d_model}) must be a multiple of vmm.head_dim "
                f"({vmm.head_dim}): the mixer splits it into heads"
            )
        if vmm.top_k > vmm.n_experts:
            raise ConfigError(f"vmm.top_k ({vmm.top_k}) must be at most vmm.n_experts ({vmm.n_experts})")
        if inverter.hidden % inverter.heads:
            raise ConfigError(
                f"inverter.hidden ({inverter.hidden}) must be a multiple of inverter.heads ({inverter.heads})"
            )


# Inclusive bounds of numeric settings, checked on every load (files, run configs, HTTP requests).
RANGES: dict[type, dict[str, tuple[float, float]]] = {
    GateConfig: {
        "alpha": (0.0, 1.0),
        "trust_radius": (1e-9, 1e3),
        "l_mod": (0.0, 1e6),
        "max_backtracks": (0, 32),
        "backtrack_factor": (0.01, 0.99),
        "check_interval": (1, 10_000),
    },
    # lambda_mod may be negative: the sign-flip ablation of `meqg eval` rewards modal collapse on purpose
    ObjectiveConfig: {field.name: (0.0, 1e6) for field in dataclasses.fields(ObjectiveConfig)}
    | {"lambda_mod": (-1e6, 1e6)},
    StoreConfig: {
        "commit_rows": (1, 10_000_000),
        "embed_batch_size": (1, 65_536),
        "max_tokens": (1, 65_536),
        "n_domains": (1, 65_536),
        "exact_search_max_rows": (0, 1e12),
        "disk_index_min_rows": (1, 1e12),
        "doctest_timeout_s": (0.1, 3600.0),
        "doctest_memory_mb": (16, 1 << 20),
        "lock_lease_s": (1.0, 3600.0),
        "ann_target_recall": (0.0, 1.0),
    },
    ModelArgs: {
        "concept_dim": (1, 65_536),
        "d_model": (1, 65_536),
        "n_layers": (1, 256),
        "d_state": (1, 4096),
        "expand": (1, 16),
        "head_dim": (1, 4096),
        "chunk_size": (1, 4096),
        "n_experts": (1, 1024),
        "top_k": (1, 1024),
        "d_ff": (1, 1 << 20),
        "router_beta": (0.0, 1e6),
        "rvq_levels": (1, 16),
        "rvq_codes": (2, 65_536),
        "context_lags": (1, 1024),
        "memory_slots": (0, 1024),
    },
    TrainConfig: {
        "steps": (1, 1e12),
        "batch_size": (1, 65_536),
        "seq_len": (1, 65_536),
        "learning_rate": (0.0, 1e6),
        "weight_decay": (0.0, 1e3),
        "warmup_steps": (0, 1e12),
        "grad_clip": (0.0, 1e12),
        "store_negatives": (0, 10_000_000),
        "temperature": (1e-6, 1e3),
        "ledger_positions": (1, 65_536),
        "ledger_samples": (1, 4096),
        "ledger_inner": (1, 256),
        "rvq_fit_steps": (0, 1e12),
        "eval_every": (0, 1e12),
        "validation_windows": (1, 10_000_000),
        "validation_edges": (1, 1_000_000),
        "baseline_mlp_steps": (1, 1e12),
        "walk_share": (0.0, 1.0),
        "walk_length": (1, 64),
        "validation_fraction": (1e-6, 0.99),
        "checkpoint_every": (0, 1e12),
        "phi_every": (0, 1e12),
        "kappa_every": (0, 1e12),
        "kappa_iterations": (1, 1024),
        "compute": (0.0, 1e18),
    },
    InversionConfig: {
        "lookup_threshold": (-1.0, 1.0),
        "steps": (1, 1e12),
        "batch_size": (1, 65_536),
        "learning_rate": (0.0, 1e6),
        "warmup_steps": (0, 1e12),
        "held_out_every": (2, 1e9),
        "eval_every": (1, 1e12),
        "own_hypotheses": (0, 1e9),
        "own_hypotheses_every": (1, 1e12),
        "correction_steps": (0, 1024),
        "candidates": (1, 1024),
        "beam": (1, 64),
        "temperature": (1e-6, 1e3),
        "target_cosine": (-1.0, 1.0),
        "vec2text_num_beams": (1, 64),
    },
    InverterArgs: {
        "concept_dim": (1, 65_536),
        "vocab_size": (16, 1 << 20),
        "hidden": (1, 65_536),
        "layers": (1, 256),
        "heads": (1, 1024),
        "prefix_tokens": (1, 1024),
        "max_tokens": (3, 65_536),
    },
    EpisodeConfig: {
        "max_steps": (1, 1024),
        "trust_radius": (1e-6, 2.0),  # a chord between unit vectors is at most 2
        "retrieve_k": (0, 64),
        "converge_cosine": (-1.0, 1.0),
        "ledger_samples": (1, 4096),
        "ledger_inner": (1, 256),
        "max_prompt_chars": (1, 1_000_000),
    },
}

T = typing.TypeVar("T")


def _coerce(key: str, expected: type, value: object) -> object:
    if typing.get_origin(expected) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key '{key}' expects a list of names, got {value!r}")
        return list(value)
    if typing.get_origin(expected) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"config key '{key}' expects a mapping of names to values, got {value!r}")
        if not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
            raise ConfigError(f"config key '{key}' holds a value that is not a string, number or boolean")
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected in (int, float) and isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"config key '{key}' expects {expected.__name__}, got {type(value).__name__} {value!r}")
    if expected is float and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be finite, got {value!r}")
    return value


def from_dict(cls: type[T], data: object, prefix: str = "") -> T:
    """Build dataclass `cls` from nested dicts, rejecting unknown keys and bad types."""
    if not isinstance(data, dict):
        where = f"'{prefix}'" if prefix else "the config"
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'")
    values = {}
    for name, value in data.items():
        key, expected = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(expected):
            values[name] = from_dict(expected, value, key + ".")
        else:
            values[name] = _coerce(key, expected, value)
            low, high = RANGES.get(cls, {}).get(name, (None, None))
            if low is not None and not low <= values[name] <= high:
                raise ConfigError(f"config key '{key}' must be in [{low:g}, {high:g}], got {value!r}")
    return cls(**values)


# What a run's saved config meant by a key it predates: its model was built before the key existed.
RUN_KEYS_BEFORE = {"vmm": {"next_generator": False, "relations": ["next"], "memory_slots": 0}}


def with_values(section: T, prefix: str, **values) -> T:
    """`section` (a config dataclass) with `values` set, checked as a config file's keys are."""
    return from_dict(type(section), {**dataclasses.asdict(section), **values}, prefix)


def load_config(path: str | Path | None, before: dict | None = None) -> MeqgConfig:
    """Defaults overlaid with a YAML file (missing keys keep their defaults, or take `before`'s
    values, section by section: what a saved run meant by a key it predates)."""
    if path is None:
        return MeqgConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    for section, values in (before or {}).items():
        if isinstance(data, dict) and isinstance(data.get(section), dict):
            data[section] = values | data[section]
    return from_dict(MeqgConfig, data)


def to_yaml(config: MeqgConfig) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def save_config(config: MeqgConfig, path: str | Path) -> None:
    write_text(path, to_yaml(config))


def load_run(run: RunDir, missing: str = "no run in") -> tuple[dict, MeqgConfig]:
    """A run's run.json and its config."""
    meta = run.read_meta(missing)
    return meta, load_config(run.config_path, RUN_KEYS_BEFORE)
