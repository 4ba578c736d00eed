"""The experiment file as a typed, strict, frozen tree that mirrors the YAML.

Resolution order: the defaults below, then the YAML file, then ``--set``
overrides. Unknown keys, wrong types, values out of range and duplicate YAML
keys all raise `ConfigError` with the dotted key, what is allowed and what was
received. Cross-field rules live in `_check_*` functions at the end.
"""

from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cnnlab.errors import ConfigError, did_you_mean

NonNegFloat = Annotated[float, Field(ge=0.0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "digits", "directory", "npz")


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    dataset: Literal[DATASETS]
    path: str | None = None
    test_path: str | None = None
    image_size: tuple[PositiveInt, PositiveInt] | None = None
    color_mode: Literal["grayscale", "rgb"] | None = None
    validation_split: Fraction = 0.1
    test_split: Fraction = 0.2  # carved from the data only when it has no test split
    scaling: Literal["unit", "symmetric", "standardize", "none", "backbone"] = "unit"
    batch_size: PositiveInt = 128
    on_bad_image: Literal["error", "skip"] = "error"


class AugmentationConfig(Section):
    engine: Literal["layers", "generator"] = "layers"
    rotation_range: NonNegFloat = 0.0
    width_shift_range: NonNegFloat = 0.0
    height_shift_range: NonNegFloat = 0.0
    zoom_range: NonNegFloat | tuple[NonNegFloat, NonNegFloat] = 0.0
    shear_range: NonNegFloat = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness_range: tuple[NonNegFloat, NonNegFloat] | None = None
    contrast_range: tuple[NonNegFloat, NonNegFloat] | None = None
    saturation_range: tuple[NonNegFloat, NonNegFloat] | None = None
    hue_delta: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    channel_shift_range: NonNegFloat = 0.0
    fill_mode: Literal["nearest", "constant", "reflect", "wrap"] = "nearest"
    cval: float = 0.0
    crop_padding: NonNegInt = 0
    random_erasing: Fraction = 0.0  # probability of erasing one random box (cutout)
    mixup_alpha: NonNegFloat = 0.0
    cutmix_alpha: NonNegFloat = 0.0
    rand_augment: dict[str, Any] | None = None  # {num_ops: 2, factor: 0.5} (keras.layers.RandAugment)


class RegularizerConfig(Section):
    l1: NonNegFloat = 0.0
    l2: NonNegFloat = 0.0


class ModelConfig(Section):
    architecture: str = "deep_cnn"
    weights: str | None = None
    activation: str = "relu"
    kernel_initializer: str = "he_normal"
    batch_norm: bool = False
    dropout: Fraction = 0.5
    kernel_regularizer: RegularizerConfig | None = None
    head: Literal["flatten", "gap"] = "flatten"
    local_response_norm: bool = False  # AlexNet's LRN
    aux_logits: bool = False  # GoogLeNet's auxiliary classifiers


class OptimizerConfig(BaseModel):
    """An optimizer by name plus Keras keyword arguments (checked when built)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]


class ScheduleConfig(BaseModel):
    """A learning-rate schedule by name plus its arguments (checked when built)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal["cosine", "step", "exponential", "onecycle"]


def _by_name(value):
    """Accept ``adam`` as shorthand for ``{name: adam}``."""
    return {"name": value} if isinstance(value, str) else value


class TrainingConfig(Section):
    epochs: PositiveInt = 30
    optimizer: Annotated[OptimizerConfig, pydantic.BeforeValidator(_by_name)] = OptimizerConfig(name="adam")
    learning_rate: Annotated[float, Field(gt=0.0)] = 0.001
    lr_schedule: Annotated[ScheduleConfig, pydantic.BeforeValidator(_by_name)] | None = None
    loss: Literal["auto", "categorical_crossentropy", "categorical_focal_crossentropy"] = "auto"
    label_smoothing: Fraction = 0.0
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    class_weight: Literal["balanced"] | dict[int | str, Annotated[float, Field(gt=0)]] | None = None
    steps_per_epoch: PositiveInt | None = None  # default: the whole training set


def _off_or(value):
    """``false`` or ``null`` switches a callback off; ``true`` takes its defaults."""
    if value is False:
        return None
    return {} if value is True else value


Monitor = str
Mode = Literal["auto", "min", "max"]


class CheckpointConfig(Section):
    monitor: Monitor = "val_loss"
    save_best_only: bool = True
    mode: Mode = "auto"
    verbose: Literal[0, 1] = 0


class ReduceLROnPlateauConfig(Section):
    monitor: Monitor = "val_loss"
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    patience: NonNegInt = 10
    min_lr: NonNegFloat = 0.0
    min_delta: NonNegFloat = 0.0001
    cooldown: NonNegInt = 0
    mode: Mode = "auto"
    verbose: Literal[0, 1] = 0


class EarlyStoppingConfig(Section):
    monitor: Monitor = "val_loss"
    patience: NonNegInt = 15
    min_delta: NonNegFloat = 0.0
    mode: Mode = "auto"
    restore_best_weights: bool = True
    start_from_epoch: NonNegInt = 0
    verbose: Literal[0, 1] = 0


def _switchable(section):
    return Annotated[section | None, pydantic.BeforeValidator(_off_or)]


class CallbacksConfig(Section):
    model_checkpoint: _switchable(CheckpointConfig) = CheckpointConfig()
    reduce_lr_on_plateau: _switchable(ReduceLROnPlateauConfig) = ReduceLROnPlateauConfig()
    early_stopping: _switchable(EarlyStoppingConfig) = EarlyStoppingConfig()
    csv_logger: bool = True
    tensorboard: bool = False


class FinetuneConfig(Section):
    base: str | None = None
    freeze: NonNegInt | str = 100
    head_epochs: NonNegInt = 5
    epochs: NonNegInt = 10
    learning_rate: Annotated[float, Field(gt=0.0)] = 1.0e-5
    train_batch_norm: bool = False


class EvaluateConfig(Section):
    split: Literal["test", "val", "train"] = "test"
    top_k: list[PositiveInt] = [1, 5]


class ExperimentConfig(Section):
    name: str | None = None
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig
    augmentation: AugmentationConfig = AugmentationConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    provenance: dict[str, Any] | None = None  # written by cnnlab into a run's config.yaml

    @model_validator(mode="before")
    @classmethod
    def _schedule_replaces_plateau(cls, data):
        """A learning-rate schedule switches ReduceLROnPlateau off unless the file asks for both."""
        if isinstance(data, dict) and (data.get("training") or {}).get("lr_schedule"):
            callbacks = data.get("callbacks") or {}
            if isinstance(callbacks, dict) and "reduce_lr_on_plateau" not in callbacks:
                data = {**data, "callbacks": {**callbacks, "reduce_lr_on_plateau": None}}
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self):
        for check in CHECKS:
            check(self)
        return self

    def to_dict(self):
        """The resolved config as plain YAML-ready data."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- cross-field rules


def _check_paths(cfg):
    if cfg.data.dataset in ("directory", "npz") and not cfg.data.path:
        raise ValueError(f"data.path is required when data.dataset is {cfg.data.dataset}: "
                         "give a folder of class sub-folders (directory) or an .npz file (npz)")


def _check_monitors(cfg):
    if cfg.data.validation_split > 0:
        return
    for name in ("model_checkpoint", "reduce_lr_on_plateau", "early_stopping"):
        section = getattr(cfg.callbacks, name)
        if section is not None and section.monitor.startswith("val_"):
            raise ValueError(f"callbacks.{name}.monitor is {section.monitor!r} but data.validation_split "
                             "is 0, so there is no validation data: monitor 'loss' or set a validation_split")


def _check_mixing(cfg):
    aug = cfg.augmentation
    if aug.engine == "generator" and (aug.mixup_alpha or aug.cutmix_alpha or aug.random_erasing or aug.rand_augment):
        raise ValueError("augmentation.mixup_alpha, cutmix_alpha, random_erasing and rand_augment need "
                         "augmentation.engine: layers (ImageDataGenerator has no such transformation)")


def _check_schedule(cfg):
    if cfg.training.lr_schedule is not None and cfg.callbacks.reduce_lr_on_plateau is not None:
        raise ValueError("training.lr_schedule and callbacks.reduce_lr_on_plateau both set the learning rate: "
                         "keep one (set callbacks.reduce_lr_on_plateau: false to use the schedule)")


CHECKS = [_check_paths, _check_monitors, _check_mixing, _check_schedule]


# --------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate keys instead of keeping the last."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}: "
                              "each key may appear once per section")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text, source, *, document=True):
    """Parse YAML text; a `document` must be a mapping of sections, a value may be anything."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source} is not valid YAML{line}: {problem}") from None
    if not document:
        return data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of sections (data:, model:, ...). "
                          f"Received: {type(data).__name__}.")
    return data


def read_yaml(path):
    """Read an experiment file into a plain dict, rejecting duplicate keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} does not exist.")
    return _parse_yaml(path.read_text(encoding="utf-8"), str(path))


def apply_overrides(data, overrides):
    """Apply ``KEY=VALUE`` strings (dotted keys, YAML-typed values) to a nested dict."""
    data = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, e.g. training.epochs=3. Received: {item!r}.")
        value = _parse_yaml(raw, f"--set {key}", document=False)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str):  # optimizer: adam  ->  {name: adam}
                child = {"name": child}
            elif not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _deepcopy(data):
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def build_config(data, source="config"):
    """Validate a plain dict into an `ExperimentConfig`, or raise one `ConfigError`."""
    try:
        return ExperimentConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path, overrides=(), **updates):
    """Load an experiment file: defaults, then the file, then ``--set`` overrides.

    Args:
        path: the YAML experiment file.
        overrides: ``KEY=VALUE`` strings.
        **updates: dotted keys given by dedicated CLI options (``training.epochs``)
            that take precedence; ``None`` values are ignored.
    """
    data = apply_overrides(read_yaml(path), [*overrides, *option_overrides(updates)])
    data.setdefault("name", Path(path).stem)
    return build_config(data, str(path))


def option_overrides(updates):
    """``{dotted.key: value}`` from dedicated CLI options as ``KEY=VALUE`` strings; None is left out."""
    return [f"{k}={_yaml_scalar(v)}" for k, v in updates.items() if v is not None]


def _yaml_scalar(value):
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def save_config(cfg, path):
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


# --------------------------------------------------------------------------- error messages


def _describe(exc):
    """Turn pydantic's errors into one line: key, what is allowed, what was received."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = [p for p in error["loc"] if not _is_union_tag(p)]
        key = ".".join(str(p) for p in loc) or "config"
        kind = error["type"]
        if kind == "extra_forbidden":
            parent = _section_fields(loc[:-1])
            hint = did_you_mean(loc[-1], parent)
            parts.append(f"unknown key '{key}'.{hint} Allowed here: {', '.join(parent)}.")
        elif kind == "missing":
            parts.append(f"'{key}' is required.")
        elif kind == "value_error":
            parts.append(str(error["ctx"]["error"]))
        else:
            received = error.get("input")
            hint = ""
            if kind == "literal_error":
                hint = did_you_mean(received, _literal_choices(error["ctx"]["expected"]))
            parts.append(f"'{key}': {error['msg']}. Received: {received!r}.{hint}")
    unique = list(dict.fromkeys(parts))
    return " ".join(unique[:3]) + (f" (and {len(unique) - 3} more)" if len(unique) > 3 else "")


def _is_union_tag(part):
    """pydantic puts the union member tried into the location; users don't need it."""
    return isinstance(part, str) and (
        part.startswith(("function-", "literal[", "tuple[", "dict[", "list["))
        or part in ("int", "str", "float", "bool", "none", "constrained-float", "constrained-int")
        or part[:1].isupper()
    )


def _section_fields(loc):
    model = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field else None
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_in(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return getattr(annotation, "__origin__", None) and _model_in(annotation.__origin__)


def _literal_choices(expected):
    return [c.strip().strip("'") for c in expected.replace(" or ", ",").split(",") if c.strip()]
