"""Declarative hyperparameter search spaces for ``python -m fat_tf.tune``.

A search space is a small JSON file that names config fields and how to sample them::

    {
      "description": "what this space is for (optional)",
      "hyperparameters": {
        "optim.lr_max":       {"type": "float", "min": 3e-4, "max": 1e-2, "sampling": "log"},
        "method.vat_ip":      {"type": "int", "min": 1, "max": 3},
        "model.backbone":     {"type": "choice", "values": ["cnn", "cnn_skip"]},
        "model.channels":     {"type": "choice", "values": [[8, 16, 32, 64], [16, 32, 64, 128]]},
        "augment.time_flip":  {"type": "boolean"},
        "optim.warmup_fraction": {"type": "fixed", "value": 0.05}
      }
    }

Every key is a ``section.field`` of :class:`fat_tf.config.Config`; every entry becomes one
keras-tuner hyperparameter of the same name:

* ``float``: ``min``, ``max``, optional ``sampling`` (``linear``, ``log``, ``reverse_log``),
  ``step`` and ``default``;
* ``int``: ``min``, ``max``, optional ``step`` (1), ``sampling`` and ``default``;
* ``choice``: ``values`` (any JSON values: lists such as channel widths and ``null`` are
  passed to keras-tuner as their JSON text and decoded again), optional ``default``;
* ``boolean``: optional ``default`` (false);
* ``fixed``: ``value`` (pins a setting for the whole search; lists and ``null`` are
  encoded like ``choice`` values).

Each package default lives in ``fat_tf/tuning/spaces/<method>.json``.
:meth:`SearchSpace.load` rejects unknown fields, unknown kinds, missing or extra keys and
values the config does not accept (names such as ``optim.lr_schedule`` or
``model.backbone`` are checked against the names the library accepts), and anything
keras-tuner refuses (e.g. ``log`` sampling with a ``step`` <= 1), with one line naming the
file and the entry. Hyperband sets each trial's epoch count itself, so
:meth:`SearchSpace.check_tuner` refuses ``train.epochs`` in a Hyperband space.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from fat_tf.config import Config, ConfigError, apply_overrides

#: Folder of the default search space of each method.
SPACES_DIR = Path(__file__).resolve().parent / "spaces"

KINDS = ("float", "int", "choice", "boolean", "fixed")
SAMPLINGS = ("linear", "log", "reverse_log")

# kind -> (required keys, optional keys)
_KEYS = {
    "float": ({"min", "max"}, {"sampling", "step", "default"}),
    "int": ({"min", "max"}, {"sampling", "step", "default"}),
    "choice": ({"values"}, {"default"}),
    "boolean": (set(), {"default"}),
    "fixed": ({"value"}, set()),
}


def default_space_path(method: str) -> Path:
    """The package's default search space file of ``method`` (e.g. ``vat``).

    Args:
        method: a training method name.

    Raises:
        ConfigError: the package has no space for ``method``.
    """
    path = SPACES_DIR / f"{method}.json"
    if not path.exists():
        known = sorted(p.stem for p in SPACES_DIR.glob("*.json"))
        raise ConfigError(f"no default search space for method {method!r} "
                          f"(have: {', '.join(known)}); pass --space FILE")
    return path


@dataclasses.dataclass(frozen=True)
class HyperparameterSpec:
    """One entry of a search space: a config field and how keras-tuner samples it.

    Args:
        name: the config field, ``section.field`` (also the keras-tuner name).
        kind: ``float``, ``int``, ``choice``, ``boolean`` or ``fixed``.
        options: the entry's other keys (``min``, ``max``, ``values`` ...).
    """

    name: str
    kind: str
    options: dict[str, Any]

    @property
    def encoded(self) -> bool:
        """Whether values go to keras-tuner as JSON text.

        True for a ``choice`` with lists, null or mixed types among its values, and for a
        ``fixed`` list, object or null: keras-tuner takes only one scalar type per
        hyperparameter.
        """
        if self.kind == "fixed":
            return _scalar_type(self.options["value"]) is None
        if self.kind != "choice":
            return False
        values = self.options["values"]
        scalar_types = {_scalar_type(v) for v in values}
        return None in scalar_types or len(scalar_types) != 1

    def declare(self, hp) -> Any:
        """Register this entry on a ``keras_tuner.HyperParameters`` and return its value.

        Args:
            hp: the trial's ``keras_tuner.HyperParameters``.
        """
        o = self.options
        if self.kind == "float":
            return hp.Float(self.name, float(o["min"]), float(o["max"]), step=o.get("step"),
                            sampling=o.get("sampling", "linear"), default=o.get("default"))
        if self.kind == "int":
            return hp.Int(self.name, int(o["min"]), int(o["max"]), step=o.get("step"),
                          sampling=o.get("sampling", "linear"), default=o.get("default"))
        if self.kind == "choice":
            values, default = o["values"], o.get("default")
            if self.encoded:
                values = [_encode(v) for v in values]
                default = None if "default" not in o else _encode(default)
            return hp.Choice(self.name, values, default=default)
        if self.kind == "boolean":
            return hp.Boolean(self.name, default=bool(o.get("default", False)))
        value = o["value"]
        return hp.Fixed(self.name, _encode(value) if self.encoded else value)

    def config_value(self, value: Any) -> Any:
        """The config value of a keras-tuner value of this entry (decodes JSON text).

        Args:
            value: what keras-tuner chose.
        """
        if self.encoded and isinstance(value, str):
            return json.loads(value)
        return value

    def candidates(self) -> list[Any]:
        """Values worth checking against the config: bounds, choices, default."""
        o = self.options
        if self.kind == "float":  # sampled as floats: an integer field must say "int"
            values = [float(o["min"]), float(o["max"])]
        elif self.kind == "int":
            values = [o["min"], o["max"]]
        elif self.kind == "choice":
            values = list(o["values"])
        elif self.kind == "boolean":
            values = [False, True]
        else:
            values = [o["value"]]
        if "default" in o:
            values.append(o["default"])
        return values


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated search space: which config fields the tuner varies, and how.

    Args:
        entries: one :class:`HyperparameterSpec` per config field, in file order.
        source: the file it came from (for messages).
        description: free text from the file.
    """

    entries: tuple[HyperparameterSpec, ...]
    source: str = "<memory>"
    description: str = ""

    @property
    def names(self) -> list[str]:
        """The config fields of the space, in file order."""
        return [e.name for e in self.entries]

    @property
    def dimensions(self) -> int:
        """The number of searched hyperparameters (``fixed`` entries excluded)."""
        return sum(e.kind != "fixed" for e in self.entries)

    def check_tuner(self, tuner: str) -> None:
        """Refuse entries the search algorithm ``tuner`` sets itself.

        Args:
            tuner: ``random``, ``bayesian`` or ``hyperband``.

        Raises:
            ConfigError: ``train.epochs`` is in a Hyperband space (Hyperband gives each
                trial its epoch count, up to ``--epochs``).
        """
        if tuner == "hyperband" and "train.epochs" in self.names:
            raise ConfigError(f"{self.source}: entry 'train.epochs': Hyperband sets each "
                              "trial's epoch count itself (the most is --epochs); remove "
                              "the entry or use --tuner random or bayesian")

    @classmethod
    def load(cls, path: str | os.PathLike, base: Config | None = None) -> SearchSpace:
        """Read and validate a search-space JSON file.

        Args:
            path: the JSON file.
            base: the config the values will be applied to (checked against it);
                default: ``Config()``.

        Raises:
            ConfigError: one line naming the file and the bad entry.
        """
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8 "
                              "JSON") from e
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the search space ({e.strerror})") from e
        return cls.from_dict(data, source=str(path), base=base)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<memory>",
                  base: Config | None = None) -> SearchSpace:
        """Validate a parsed search space (see the module docstring for the format).

        Args:
            data: the parsed JSON object.
            source: where it came from, for messages.
            base: the config the values will be applied to; default ``Config()``.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object at the top level")
        extra = set(data) - {"description", "hyperparameters"}
        if extra:
            raise ConfigError(f"{source}: unknown top-level key(s) {sorted(extra)}; "
                              "expected 'hyperparameters' (and optionally 'description')")
        hps = data.get("hyperparameters")
        if not isinstance(hps, dict) or not hps:
            raise ConfigError(f"{source}: 'hyperparameters' must be a non-empty object of "
                              "'section.field': {\"type\": ...} entries")
        base = base or Config()
        entries = tuple(_parse_entry(name, spec, source, base) for name, spec in hps.items())
        return cls(entries, source, str(data.get("description", "")))

    def declare(self, hp) -> dict[str, Any]:
        """Register every entry on ``hp`` and return ``{field: config value}``.

        Args:
            hp: the trial's ``keras_tuner.HyperParameters``.
        """
        return {e.name: e.config_value(e.declare(hp)) for e in self.entries}

    def overrides(self, values: dict[str, Any]) -> dict[str, Any]:
        """Config overrides for keras-tuner ``values`` (keys outside the space ignored).

        Args:
            values: a trial's hyperparameter values.
        """
        return {e.name: e.config_value(values[e.name]) for e in self.entries
                if e.name in values}

    def apply(self, config: Config, values: dict[str, Any]) -> Config:
        """``config`` with the space's fields set from keras-tuner ``values``.

        Args:
            config: the base config.
            values: a trial's hyperparameter values.
        """
        return apply_overrides(config, self.overrides(values))

    def fingerprint(self) -> list[dict[str, Any]]:
        """A JSON-able description of the space (to tell whether a search can resume)."""
        return [{"name": e.name, "type": e.kind, **e.options} for e in self.entries]


def _parse_entry(name: Any, spec: Any, source: str, base: Config) -> HyperparameterSpec:
    where = f"{source}: entry {name!r}"

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{where}: {message}")

    fields = base.to_dict()
    section, _, field = str(name).partition(".")
    if not field or section not in fields or not isinstance(fields[section], dict):
        raise fail("unknown config field; names look like 'optim.lr_max' "
                   f"(sections: {', '.join(k for k, v in fields.items() if isinstance(v, dict))})")
    if field not in fields[section]:
        raise fail(f"unknown config field; {section} has: {', '.join(sorted(fields[section]))}")
    if not isinstance(spec, dict):
        raise fail('expected an object such as {"type": "float", "min": 0.1, "max": 1}')
    kind = spec.get("type")
    if kind not in KINDS:
        raise fail(f"unknown type {kind!r}; use one of {', '.join(KINDS)}")
    required, optional = _KEYS[kind]
    missing = required - set(spec)
    if missing:
        raise fail(f"type {kind!r} needs {', '.join(sorted(missing))}")
    extra = set(spec) - required - optional - {"type"}
    if extra:
        raise fail(f"unknown key(s) {', '.join(sorted(extra))} for type {kind!r}")
    options = {k: v for k, v in spec.items() if k != "type"}
    if kind in ("float", "int"):
        number = int if kind == "int" else (int, float)
        for key in ("min", "max", "step", "default"):
            value = options.get(key)
            if key in options and (isinstance(value, bool) or not isinstance(value, number)
                                   or not math.isfinite(value)):
                raise fail(f"{key} must be {'an integer' if kind == 'int' else 'a number'}, "
                           f"got {value!r}")
        if not options["min"] < options["max"]:
            raise fail(f"min ({options['min']}) must be below max ({options['max']})")
        sampling = options.get("sampling", "linear")
        if sampling not in SAMPLINGS:
            raise fail(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        if sampling != "linear" and options["min"] <= 0:
            raise fail(f"{sampling} sampling needs min > 0")
        if "step" in options and options["step"] <= 0:
            raise fail("step must be positive")
        if "default" in options and not options["min"] <= options["default"] <= options["max"]:
            raise fail(f"default {options['default']} is outside [min, max]")
    elif kind == "choice":
        values = options["values"]
        if not isinstance(values, list) or not values:
            raise fail("values must be a non-empty list")
        texts = [_encode(v) for v in values]
        if len(set(texts)) != len(texts):
            raise fail("values has duplicates")
        if "default" in options and _encode(options["default"]) not in texts:
            raise fail(f"default {options['default']!r} is not one of the values")
    elif kind == "boolean":
        if "default" in options and not isinstance(options["default"], bool):
            raise fail(f"default must be true or false, got {options['default']!r}")
    entry = HyperparameterSpec(str(name), kind, options)
    allowed = _allowed_names().get(entry.name)
    for value in entry.candidates():
        if allowed is not None and value not in allowed:
            raise fail(f"value {value!r} is not accepted by the config (choose from "
                       f"{', '.join(allowed)})")
        try:
            apply_overrides(base, {entry.name: value})
        except ConfigError as e:
            raise fail(f"value {value!r} is not accepted by the config ({e})") from None
    import keras_tuner

    try:  # whatever keras-tuner itself refuses (e.g. log sampling with step <= 1)
        entry.declare(keras_tuner.HyperParameters())
    except Exception as e:  # any refusal becomes one line naming the entry
        raise fail(f"keras-tuner refuses it: {' '.join(str(e).split())}") from None
    return entry


def _allowed_names() -> dict[str, tuple[str, ...]]:
    """The names string fields accept (their home is :mod:`fat_tf.config`), checked before
    the config so a search space's typo gets the list of valid names."""
    from fat_tf import config

    return {"optim.lr_schedule": config.LR_SCHEDULES, "model.backbone": config.BACKBONES,
            "model.pooling": config.POOLING_ORDERS, "train.loss": config.LOSS_NAMES,
            "train.method": config.METHOD_NAMES, "optim.optimizer": config.OPTIMIZERS,
            "data.window_pooling": config.WINDOW_POOLINGS,
            "frontend.pad_mode": config.PAD_MODES}


def _scalar_type(value: Any) -> type | None:
    if value is None or isinstance(value, (list, dict)):
        return None
    return type(value)


def _encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
