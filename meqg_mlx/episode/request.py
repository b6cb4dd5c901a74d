"""The episode request (docs/design.md, HTTP API), validated: {model, prompt, budget, tools, config, telemetry}.

Every problem is an InputError naming the field, so `meqg serve` can answer 400 with it.
`config` may override the objective ("obj" is accepted for it) and episode settings
within their ranges (`config.RANGES`); the settings that bound an episode's cost
(CEILINGS) and the budget may only be tightened below the server's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import EpisodeConfig, MeqgConfig, ObjectiveConfig, with_values
from ..corpus.relations import NEXT, RelationVocabulary
from ..errors import ConfigError, InputError
from .budget import LIMITS, Budget
from .tools import check_tool_names

FIELDS = ("model", "prompt", "budget", "tools", "config", "telemetry", "relation")
CEILINGS = {
    "episode": ("max_steps", "trust_radius", "retrieve_k", "ledger_samples", "ledger_inner", "max_prompt_chars")
}
SECTIONS = {
    "obj": ("objective", ObjectiveConfig),
    "objective": ("objective", ObjectiveConfig),
    "episode": ("episode", EpisodeConfig),
}


def check_prompt(prompt: object, max_chars: int) -> str:
    """An episode's prompt, or a one-line error: not text, empty, or longer than `episode.max_prompt_chars`."""
    if not isinstance(prompt, str):
        raise InputError(f"the prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InputError("the prompt is empty")
    if len(prompt) > max_chars:
        raise InputError(f"the prompt has {len(prompt)} characters; the limit is {max_chars}")
    return prompt


@dataclass
class EpisodeRequest:
    prompt: str
    budget: Budget
    tools: list[str]
    config: MeqgConfig
    model: str | None = None
    telemetry: bool = True
    relation: str = NEXT

    @classmethod
    def from_json(cls, body: object, base: MeqgConfig, ceiling: Budget | None = None) -> "EpisodeRequest":
        """The request on `base`; with `ceiling`, a budget above it is refused and defaults are cut to it."""
        if not isinstance(body, dict):
            raise InputError(f"the request must be a JSON object, got {type(body).__name__}")
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise InputError(f"unknown request field '{unknown[0]}' (known: {', '.join(FIELDS)})")
        config = overridden(base, body.get("config", {}))
        prompt = check_prompt(body.get("prompt"), config.episode.max_prompt_chars)
        tools = body.get("tools", [])
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise InputError("tools must be a list of tool names")
        tools = check_tool_names(tools)
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise InputError("model must be a string")
        telemetry = body.get("telemetry", True)
        if not isinstance(telemetry, bool):
            raise InputError("telemetry must be true or false")
        relation = body.get("relation", NEXT)
        if not isinstance(relation, str):
            raise InputError("relation must be a relation's name")
        RelationVocabulary.of_model(base.vmm.relations).id(relation)  # a relation the run knows
        given = body.get("budget", {})
        budget = Budget.from_dict(given)
        if ceiling is not None:
            for name in LIMITS:
                if name in given and given[name] > getattr(ceiling, name):
                    raise InputError(f"budget {name} {given[name]:g} is above this server's {getattr(ceiling, name):g}")
            budget = Budget(**{name: min(getattr(budget, name), getattr(ceiling, name)) for name in LIMITS})
        return cls(prompt, budget, tools, config, model, telemetry, relation)


def overridden(base: MeqgConfig, overrides: object) -> MeqgConfig:
    """`base` with a request's {"obj"|"objective"|"episode": {key: value}} applied; unknown keys are errors."""
    if not isinstance(overrides, dict):
        raise InputError('config must be an object such as {"obj": {"lambda_mod": 0.4}}')
    config = base
    for name, values in overrides.items():
        if name not in SECTIONS:
            raise InputError(f"unknown config section '{name}' (a request may set: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise InputError(f"config.{name} must be an object")
        field, cls = SECTIONS[name]
        try:
            section = with_values(getattr(config, field), f"config.{name}.", **values)
        except ConfigError as exc:
            raise InputError(str(exc)) from exc
        for key in CEILINGS.get(field, ()):
            if getattr(section, key) > getattr(getattr(base, field), key):
                raise InputError(
                    f"config.{name}.{key} {getattr(section, key)!r} is above this server's "
                    f"{getattr(getattr(base, field), key)!r}: a request may only lower it"
                )
        config = dataclasses.replace(config, **{field: section})
    return config
