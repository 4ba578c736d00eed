"""The experiment file as a typed, strict, frozen tree that mirrors the YAML.

Resolution order: the defaults below, then the YAML file, then ``--set``
overrides. Unknown keys, wrong types, values out of range and duplicate YAML
keys all raise `ConfigError` with the dotted key, what is allowed and what was
received. Cross-field rules live in `_check_*` functions at the end; every name
is checked against `cnnlab.catalog`, so all of this runs before TensorFlow is
imported. The loader returns a valid config or raises `ConfigError`, nothing else.
"""

import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from cnnlab import catalog
from cnnlab.errors import ConfigError, did_you_mean
from cnnlab.files import write_text

NonNegFloat = Annotated[float, Field(ge=0.0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
MAX_IMAGE_SIDE = 4096
ImageSide = Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values never change, no inf or NaN."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(Section):
    dataset: Literal[tuple(catalog.DATASETS)]
    path: str | None = None
    test_path: str | None = None
    image_size: tuple[ImageSide, ImageSide] | None = Field(None, description="[H, W]", examples=[[32, 32]])
    color_mode: Literal["grayscale", "rgb"] | None = None
    validation_split: Fraction = 0.1
    test_split: Fraction = 0.2  # carved from the data only when it has no test split
    split_seed: Annotated[int, Field(ge=0, lt=2**32)] | None = 0  # draws the val/test splits; null: `seed` does
    scaling: Literal[catalog.SCALINGS] = "unit"
    batch_size: PositiveInt = 128
    on_bad_image: Literal["error", "skip"] = "error"
    classes: list[str] | None = Field(None, description="names of the mask indices, in order (segmentation)",
                                      examples=[["background", "pet", "border"]])
    ignore_index: Annotated[int, Field(ge=0, le=255)] = 255  # segmentation: a mask value left out of loss and metrics
    exclude: str | None = None  # a file of images to leave out, one a line (`cnnlab doctor`'s exclude.txt)


class AugmentationConfig(Section):
    engine: Literal[catalog.ENGINES] = "layers"
    rotation_range: NonNegFloat = 0.0
    width_shift_range: NonNegFloat = 0.0
    height_shift_range: NonNegFloat = 0.0
    zoom_range: NonNegFloat | tuple[NonNegFloat, NonNegFloat] = Field(
        0.0, description="a number or [low, high]", examples=[[0.9, 1.1]])
    shear_range: NonNegFloat = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness_range: tuple[NonNegFloat, NonNegFloat] | None = Field(None, description="[low, high]",
                                                                     examples=[[0.8, 1.2]])
    contrast_range: tuple[NonNegFloat, NonNegFloat] | None = Field(None, description="[low, high]",
                                                                   examples=[[0.8, 1.2]])
    saturation_range: tuple[NonNegFloat, NonNegFloat] | None = Field(None, description="[low, high]",
                                                                     examples=[[0.8, 1.2]])
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
    width: Annotated[float, Field(gt=0.0, le=4.0)] = 1.0  # segmentation networks: a multiplier of every filter count


class OptimizerConfig(BaseModel):
    """An optimizer by name plus Keras keyword arguments (checked by `_check_optimizer`)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal[tuple(catalog.OPTIMIZERS)]


class ScheduleConfig(BaseModel):
    """A learning-rate schedule by name plus its arguments (checked by `_check_lr_schedule`)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal[tuple(catalog.SCHEDULES)]


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
    lr_schedule: Annotated[ScheduleConfig, pydantic.BeforeValidator(_by_name)] | None = None  # phase 2's; replaces
    # callbacks.reduce_lr_on_plateau in phase 2
    lr_mult: Annotated[float, Field(ge=1.0)] = 1.0  # phase 2: the head's rate / the first trainable layer's
    train_batch_norm: bool = False


class RuntimeConfig(Section):
    backend: Literal[catalog.BACKENDS] = "tensorflow"  # Keras's backend; the data pipeline is tf.data on either
    fast_kernels: bool = True  # TensorFlow: fused BatchNormalization, strided depthwise in float32 under bf16
    steps_per_execution: PositiveInt = 8  # most batches per compiled call (a divisor of the epoch's batches)


COORDINATOR_PATTERN = re.compile(r"[^\s:]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}")


def _coordinator(value):
    if value is not None and not COORDINATOR_PATTERN.fullmatch(value):
        raise ValueError(f"`distribution.coordinator` must be HOST:PORT, e.g. 10.0.0.1:1234. "
                         f"Received: {_short(value)}.")
    return value


class DistributionConfig(Section):
    """Training on several processes (`cnnlab.distribution`); unset keys come from the environment."""

    workers: PositiveInt | None = None  # processes in the job; default KERAS_DISTRIBUTION_NUM_PROCESSES, else 1
    coordinator: Annotated[str | None, AfterValidator(_coordinator)] = None  # HOST:PORT of process 0
    process_id: Annotated[int, Field(ge=0)] | None = None  # this process's number, 0 .. workers - 1
    timeout: PositiveInt = 120  # seconds to wait for every worker to join, and for a silent one


class EvaluateConfig(Section):
    split: Literal["test", "val", "train"] = "test"
    top_k: list[PositiveInt] = Field([1, 5], description="a list of k values", examples=[[1, 5]])


class RangeSpace(Section):
    """Numbers drawn between `low` and `high`: evenly (``uniform``) or evenly in their logarithm."""

    space: Literal["uniform", "loguniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self):
        _check_range(self)
        if self.space == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform space needs low > 0 (its logarithm is drawn). Received: low {self.low}.")
        return self


class IntSpace(Section):
    """Whole numbers from `low` to `high` (both included), every `step`-th, evenly or (``log``) in the logarithm."""

    space: Literal["int"]
    low: int
    high: int
    step: PositiveInt = 1
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        _check_range(self)
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError(f"an int space with log: true needs low > 0 and step 1. Received: low {self.low}, "
                             f"step {self.step}.")
        return self


class ChoiceSpace(Section):
    """One of `values` (any YAML values the key takes)."""

    space: Literal["choice"]
    values: Annotated[list[Any], Field(min_length=1)]


def _check_range(space):
    if space.low >= space.high:
        raise ValueError(f"a {space.space} space needs low < high. Received: low {space.low}, high {space.high}.")


ParameterSpace = Annotated[RangeSpace | IntSpace | ChoiceSpace, Field(discriminator="space")]


class TuneConfig(Section):
    """A hyperparameter search (`cnnlab tune`): each of `parameters` (a dotted config key) drawn from its space."""

    metric: str | None = None  # a metric training logs; default: the checkpoint's monitor
    direction: Literal["maximize", "minimize"] | None = None  # default: minimize a loss, maximize the rest
    trials: PositiveInt = 20
    sampler: Literal[catalog.SAMPLERS] = "tpe"
    pruner: Literal[catalog.PRUNERS] = "median"
    storage: str | None = None  # default: an SQLite file beside the runs; postgresql://... to share a study
    parameters: dict[str, ParameterSpace] = Field(default_factory=dict, examples=[
        {"training.learning_rate": {"space": "loguniform", "low": 1.0e-4, "high": 0.1}}])


class MlflowConfig(Section):
    """Where a run is tracked in MLflow (`cnnlab.tracking`)."""

    uri: str | None = None  # the tracking server or store; null: MLflow's own default (MLFLOW_TRACKING_URI, ...)
    experiment: str | None = None  # the MLflow experiment; null: the experiment's name
    parent_run: str | None = None  # an MLflow run id this run's is a child of (a tune trial's: its study's)


class TrackingConfig(Section):
    mlflow: _switchable(MlflowConfig) = None  # true: MLflow with its defaults


NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def _run_name(value):
    """A run name is one path component, so a run never lands outside ``output_dir``."""
    if value is not None and (not NAME_PATTERN.fullmatch(value) or value in (".", "..")):
        raise ValueError(f"`name` must be one folder name: letters, digits, '-', '_' and '.' (not '.' or '..'). "
                         f"Received: {_short(value)}.")
    return value


def _numbers_as_text(value):
    """``name: 2024`` is a name, not a number."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _output_dir(value):
    """Runs stay under ``output_dir``: no ``..`` components (an absolute path is fine)."""
    if ".." in Path(value).parts:
        raise ValueError(f"`output_dir` must not contain '..' components (an absolute path is allowed). "
                         f"Received: {_short(value)}.")
    return value


class ExperimentConfig(Section):
    name: Annotated[str | None, pydantic.BeforeValidator(_numbers_as_text), AfterValidator(_run_name)] = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 42
    deterministic: bool = False  # TensorFlow's op determinism: bit-identical reruns and resumes, somewhat slower
    output_dir: Annotated[str, AfterValidator(_output_dir)] = "runs"
    task: Literal[catalog.TASKS] = "classification"
    data: DataConfig
    augmentation: AugmentationConfig = AugmentationConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    distribution: DistributionConfig = DistributionConfig()
    tune: TuneConfig | None = None  # the search `cnnlab tune` runs; `train` leaves it alone
    tracking: TrackingConfig = TrackingConfig()
    provenance: dict[str, Any] | None = None  # written by cnnlab into a run's config.yaml

    @model_validator(mode="before")
    @classmethod
    def _schedule_replaces_plateau(cls, data):
        """A learning-rate schedule switches ReduceLROnPlateau off unless the file asks for both."""
        training = data.get("training") if isinstance(data, dict) else None
        if isinstance(training, dict) and training.get("lr_schedule"):
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

    def trial_base(self):
        """The experiment a search's trials start from, as plain data: the resolved config without its search
        (``tune``) and provenance."""
        return {k: v for k, v in self.to_dict().items() if k not in ("tune", "provenance")}


# --------------------------------------------------------------------------- cross-field rules


def _check_paths(cfg):
    if catalog.DATASETS[cfg.data.dataset].path and not cfg.data.path:
        raise ValueError(f"data.path is required when data.dataset is {cfg.data.dataset}: "
                         "give a folder of class sub-folders (directory), an .npz file (npz) or a CSV of "
                         "path,labels (csv)")


def _check_task(cfg):
    dataset = catalog.DATASETS[cfg.data.dataset]
    if cfg.task not in dataset.tasks:
        readers = ", ".join(f"{name} ({', '.join(d.tasks)})" for name, d in catalog.DATASETS.items()
                            if cfg.task in d.tasks)
        raise ValueError(f"data.dataset {cfg.data.dataset} holds labels for {' or '.join(dataset.tasks)}, not for "
                         f"task {cfg.task}: give data that task reads: {readers}")
    spec = catalog.ARCHITECTURES.get(cfg.model.architecture)
    if spec is not None and cfg.task not in spec.tasks:
        serving = ", ".join(n for n, a in catalog.ARCHITECTURES.items() if cfg.task in a.tasks and
                            a.family != "keras.applications")
        outputs = "a class per pixel" if "segmentation" in spec.tasks else "one row of class scores per image"
        raise ValueError(f"model.architecture {spec.name} serves task {' or '.join(spec.tasks)}, not {cfg.task}: "
                         f"it outputs {outputs}. For {cfg.task} use one of: {serving}")
    for rule in TASK_RULES.get(cfg.task, ()):
        rule(cfg)


def _no_label_smoothing(cfg):
    if cfg.training.label_smoothing:
        why = {"multilabel": "it would pull every absent label's target up from 0 and every present one's down "
                             "from 1 in each sigmoid, and the per-class thresholds chosen on validation would have "
                             "to undo it",
               "segmentation": "the sparse per-pixel cross-entropy takes class indices, which cannot be smoothed"}
        raise ValueError(f"training.label_smoothing is refused for task {cfg.task}: {why[cfg.task]}. Set it to 0")


def _automatic_loss(cfg):
    if cfg.training.loss != "auto":
        what = {"multilabel": "binary cross-entropy per class",
                "segmentation": "cross-entropy per pixel, data.ignore_index left out"}
        raise ValueError(f"training.loss must be auto for task {cfg.task} ({what[cfg.task]}). "
                         f"Received: {cfg.training.loss!r}")


def _multilabel_class_weight(cfg):
    if isinstance(cfg.training.class_weight, dict):
        raise ValueError("training.class_weight for task multilabel is balanced (each class's positives "
                         "weighted by its negatives / positives) or null: a mapping weighs one class per image")


def _segmentation_rules(cfg):
    if isinstance(cfg.training.class_weight, dict):
        raise ValueError("training.class_weight for task segmentation is balanced (each pixel weighted by its "
                         "class's rarity in the training masks) or null: a mapping of weights per class is not "
                         "supported for masks")
    aug = cfg.augmentation
    if aug.engine == "generator" and aug.model_dump(exclude={"engine"}) != AugmentationConfig().model_dump(
            exclude={"engine"}):  # some key transforms images
        raise ValueError("augmentation.engine: generator cannot move a mask with its image (ImageDataGenerator "
                         "transforms images alone): use augmentation.engine: layers for task segmentation")
    for key in ("mixup_alpha", "cutmix_alpha", "rand_augment"):
        if getattr(aug, key):
            raise ValueError(f"augmentation.{key} is refused for task segmentation: it would mix or move pixels "
                             "without their mask. Geometric keys (rotation, shifts, zoom, shear, flips, "
                             "crop_padding) move image and mask together; colour keys change the image alone")
    if cfg.data.dataset == "oxford_pets" and not cfg.data.image_size:
        raise ValueError("data.image_size is required for data.dataset oxford_pets (its photos have many sizes): "
                         "e.g. [160, 160], as the keras-io example uses")


TASK_RULES = {"multilabel": (_no_label_smoothing, _automatic_loss, _multilabel_class_weight),
              "segmentation": (_no_label_smoothing, _automatic_loss, _segmentation_rules)}


def _check_model(cfg):
    problem = model_problem(cfg.model)
    if problem:
        raise ValueError(problem)


def _check_optimizer(cfg):
    optimizer = cfg.training.optimizer
    spec = catalog.OPTIMIZERS[optimizer.name]
    _check_arguments("training.optimizer", f"{optimizer.name} (keras.optimizers.{spec.keras_class})",
                     optimizer.model_extra or {}, spec.args)


def _check_lr_schedule(cfg):
    for key, schedule in (("training.lr_schedule", cfg.training.lr_schedule),
                          ("finetune.lr_schedule", cfg.finetune.lr_schedule)):
        if schedule is None:
            continue
        args = schedule.model_extra or {}
        _check_arguments(key, f"the {schedule.name} schedule", args, catalog.SCHEDULES[schedule.name])
        for name in catalog.REQUIRED_SCHEDULE_ARGS.get(schedule.name, ()):
            if name not in args:
                raise ValueError(f"`{key}.{name}` is required for the {schedule.name} schedule: "
                                 f"{catalog.SCHEDULES[schedule.name][name]}.")


def _check_arguments(key, what, given, kinds):
    """Keyword arguments `given` against `kinds` (name -> value kind from the catalog)."""
    for name, value in given.items():
        if name == "learning_rate":
            raise ValueError(f"`{key}.learning_rate`: set training.learning_rate instead.")
        if name not in kinds:
            raise ValueError(f"unknown key '{key}.{name}' for {what}.{did_you_mean(name, kinds)} "
                             f"Allowed here: {', '.join(kinds)}.")
        problem = catalog.value_problem(value, kinds[name])
        if problem:
            raise ValueError(f"`{key}.{name}` {problem}. Received: {_short(value)}.")


CALLBACKS_WITH_MONITOR = ("model_checkpoint", "reduce_lr_on_plateau", "early_stopping")


def _check_monitors(cfg):
    allowed = catalog.logged_metrics(cfg.evaluate.top_k, catalog.DATASETS[cfg.data.dataset].classes, cfg.task)
    for name in CALLBACKS_WITH_MONITOR:
        section = getattr(cfg.callbacks, name)
        if section is None:
            continue
        if section.monitor not in allowed:
            raise ValueError(f"`callbacks.{name}.monitor` must be a metric training logs: {', '.join(allowed)}. "
                             f"Received: {_short(section.monitor)}.{did_you_mean(section.monitor, allowed)}")
        if section.monitor.startswith("val_") and cfg.data.validation_split == 0:
            raise ValueError(f"callbacks.{name}.monitor is {section.monitor!r} but data.validation_split "
                             "is 0, so there is no validation data: monitor 'loss' or set a validation_split")


def _check_class_weight(cfg):
    weights, names = cfg.training.class_weight, catalog.DATASETS[cfg.data.dataset].class_names
    if not isinstance(weights, dict) or names is None:
        return
    for key in weights:
        if not (str(key) in names or (isinstance(key, int) and 0 <= key < len(names))):
            raise ValueError(f"`training.class_weight` key {key!r} is not a class of {cfg.data.dataset}: use a "
                             f"class index 0..{len(names) - 1} or a class name ({', '.join(names[:10])}"
                             f"{', ...' if len(names) > 10 else ''}).")


def _check_mixing(cfg):
    aug = cfg.augmentation
    if aug.engine == "generator" and (aug.mixup_alpha or aug.cutmix_alpha or aug.random_erasing or aug.rand_augment):
        raise ValueError("augmentation.mixup_alpha, cutmix_alpha, random_erasing and rand_augment need "
                         "augmentation.engine: layers (ImageDataGenerator has no such transformation)")


def _check_schedule(cfg):
    if cfg.training.lr_schedule is not None and cfg.callbacks.reduce_lr_on_plateau is not None:
        raise ValueError("training.lr_schedule and callbacks.reduce_lr_on_plateau both set the learning rate: "
                         "keep one (set callbacks.reduce_lr_on_plateau: false to use the schedule)")


def _check_tune(cfg):
    """The search's metric is one training logs, and every value each parameter's space can draw makes a valid
    experiment (each key checked with its space's ends, a value between them, or each of its choices)."""
    tune = cfg.tune
    if tune is None:
        return
    allowed = catalog.logged_metrics(cfg.evaluate.top_k, catalog.DATASETS[cfg.data.dataset].classes, cfg.task)
    if tune.metric is not None and tune.metric not in allowed:
        raise ValueError(f"`tune.metric` must be a metric training logs: {', '.join(allowed)}. "
                         f"Received: {_short(tune.metric)}.{did_you_mean(tune.metric, allowed)}")
    checkpoint = cfg.callbacks.model_checkpoint
    metric = tune.metric or (checkpoint.monitor if checkpoint else "val_loss")  # cnnlab.tuning.study.metric_of
    if metric.startswith("val_") and cfg.data.validation_split == 0:
        raise ValueError(f"the search's metric is {metric!r} (tune.metric, else the checkpoint's monitor) but "
                         "data.validation_split is 0, so there is no validation data: set a validation_split "
                         "(a search must not choose on the test split)")
    if not cfg.callbacks.csv_logger:
        raise ValueError("tune: needs callbacks.csv_logger: true, the history whose epochs a trial reports to "
                         "the pruner and takes its value from")
    base = cfg.trial_base()
    for key, space in tune.parameters.items():
        _check_parameter(base, key, space, tune.sampler)


def _check_parameter(base, key, space, sampler):
    parts = key.split(".")
    if parts[0] in catalog.UNTUNABLE or not all(parts):
        raise ValueError(f"`tune.parameters` key {_short(key)} cannot be searched: name a dotted key of the "
                         f"experiment outside {', '.join(catalog.UNTUNABLE)}, e.g. training.learning_rate")
    if sampler == "grid" and space.space in ("uniform", "loguniform"):
        raise ValueError(f"`tune.parameters.{key}` is a {space.space} space, which the grid sampler cannot "
                         "enumerate: use space: choice (or int), or another sampler")
    for value in _probes(space):
        data = _deepcopy(base)
        set_key(data, parts, value)
        try:
            probe = ExperimentConfig.model_validate(data)
        except pydantic.ValidationError as exc:
            problems = "; ".join(dict.fromkeys(_describe_one(e, _location(e)) for e in exc.errors(include_url=False)))
            raise ValueError(f"`tune.parameters.{key}` ({space.space}) can draw {_short(value)}, which does not "
                             f"make a valid experiment: {problems}") from None
        if not probe.callbacks.csv_logger:
            raise ValueError(f"`tune.parameters.{key}` can turn callbacks.csv_logger off, but a trial needs it: "
                             "tune: needs callbacks.csv_logger: true, the history a trial reports to the pruner")


def _probes(space):
    """Values that stand for what `space` can draw: its ends and a value between them, or every choice."""
    if space.space == "choice":
        return space.values
    if space.space == "int":
        return [space.low, space.high - (space.high - space.low) % space.step]
    return [space.low, space.low + 0.37 * (space.high - space.low), space.high]


CHECKS = [_check_paths, _check_task, _check_model, _check_optimizer, _check_lr_schedule, _check_monitors,
          _check_class_weight, _check_mixing, _check_schedule, _check_tune]


# --------------------------------------------------------------------------- the model section


def unknown_architecture(name):
    """The message for an unknown architecture: the closest names, not all of them."""
    close = catalog.closest(name, catalog.ARCHITECTURES)
    hint = f" Did you mean '{close[0]}'? Close names: {', '.join(close)}." if close else ""
    return (f"`model.architecture` must name a cnnlab architecture. Received: {_short(name)}.{hint} "
            f"`cnnlab models` lists all {len(catalog.ARCHITECTURES)}.")


def model_problem(model_cfg):
    """What is wrong with a `ModelConfig` for its architecture, or None. Needs no TensorFlow."""
    spec = catalog.ARCHITECTURES.get(model_cfg.architecture)
    if spec is None:
        return unknown_architecture(model_cfg.architecture)
    return _weights_problem(model_cfg, spec) or _options_problem(model_cfg, spec) or _names_problem(model_cfg)


def _weights_problem(model_cfg, spec):
    if not model_cfg.weights or "weights" in spec.options:
        return None
    twins = ", ".join(n for n, a in catalog.ARCHITECTURES.items()
                      if "weights" in a.options and a.family != "keras.applications")
    return (f"`model.weights` is for keras.applications backbones, their zoo twins and the networks over "
            f"their bodies ({twins}); "
            f"'{spec.name}' has no pretrained weights. To start from a trained cnnlab model use "
            f"`finetune.base`. Received: {model_cfg.weights!r}.")


def _options_problem(model_cfg, spec):
    defaults = type(model_cfg)()
    for option in catalog.MODEL_OPTIONS:
        value = getattr(model_cfg, option)
        if option not in spec.options and value != getattr(defaults, option):
            return (f"`model.{option}` is not an option of '{spec.name}' (it honours: "
                    f"{', '.join(spec.options) or 'none'}). Received: {_short(value)}.")
    return None


def _names_problem(model_cfg):
    for key, names, examples in (("activation", catalog.ACTIVATIONS, "relu, gelu, swish"),
                                 ("kernel_initializer", catalog.INITIALIZERS, "he_normal, glorot_uniform")):
        value = getattr(model_cfg, key)
        if value not in names:
            return (f"`model.{key}` must name a Keras {key.replace('kernel_', '')} (e.g. {examples}; all: "
                    f"{', '.join(names)}). Received: {_short(value)}.{did_you_mean(value, names)}")
    return None


# --------------------------------------------------------------------------- files the config names


def check_files(cfg):
    """Raise `ConfigError` if a path the experiment reads does not exist (data, test data, weights file)."""
    data = cfg.data
    kind = catalog.DATASETS[data.dataset].path
    for key, value in (("data.path", data.path), ("data.test_path", data.test_path)):
        if kind and value:
            _check_path(key, value, kind, data.dataset)
    if data.exclude and not Path(data.exclude).is_file():
        raise ConfigError(f"`data.exclude` must be a file of images to leave out (cnnlab doctor writes one: "
                          f"exclude.txt). Received: {data.exclude!r} (no such file).")
    weights = cfg.model.weights
    if weights and weights != "imagenet" and not Path(weights).is_file():
        raise ConfigError(f"`model.weights` must be null, imagenet or an existing weights file. "
                          f"Received: {weights!r} (no such file).")
    return cfg


def _check_path(key, value, kind, dataset):
    path = Path(value)
    if kind == "folder" and not path.is_dir():
        raise ConfigError(f"{key} {value!r} is not a folder: dataset {dataset} needs a folder with one "
                          "sub-folder of images per class.")
    if kind == "file" and not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        need = ("a CSV file with the columns path,labels" if dataset == "csv" else
                "an .npz file with x_train and y_train")
        raise ConfigError(f"{key} {value!r} {problem}: dataset {dataset} needs {need}.")


# --------------------------------------------------------------------------- loading

MAX_VALUES = 100_000  # values a config may hold once aliases are expanded (stops alias bombs)
MAX_DEPTH = 50  # nesting levels


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate and unhashable keys, and reads ``1e-4`` as a number."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if isinstance(key, (list, dict)):
            raise ConfigError(f"a key at line {line} is a {'list' if isinstance(key, list) else 'mapping'}: "
                              "keys must be plain names such as epochs")
        if key in seen:
            raise ConfigError(f"duplicate key {_short(key)} at line {line}: each key may appear once per section")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads 1e-4 (no dot) as text; YAML 1.2 and every user read it as a number.
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))


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
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply to be an experiment (at most {MAX_DEPTH} levels)") from None
    _check_size(data, source)
    if not document:
        return data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of sections (data:, model:, ...). "
                          f"Received: {type(data).__name__}.")
    return data


def _check_size(data, source):
    """Reject what aliases can build: a structure holding itself, or one too big or deep for a config."""
    budget, ancestors = [MAX_VALUES], set()

    def walk(node, depth):
        if not isinstance(node, (dict, list)):
            return
        if id(node) in ancestors:
            raise ConfigError(f"{source}: a YAML alias refers to the value that holds it (as in x: &x [*x]); "
                              "an alias must name a finished value")
        budget[0] -= len(node)
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise ConfigError(f"{source} is too big for an experiment once its aliases are expanded (at most "
                              f"{MAX_VALUES:,} values, {MAX_DEPTH} levels deep): is it an alias bomb?")
        ancestors.add(id(node))
        for child in node.values() if isinstance(node, dict) else node:
            walk(child, depth + 1)
        ancestors.discard(id(node))

    walk(data, 0)


def read_yaml(path):
    """Read an experiment file into a plain dict, rejecting duplicate keys."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"experiment file {str(path)!r} is a folder: give a YAML file.")
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"experiment file {str(path)!r} is not UTF-8 text (byte {exc.start}): save it as "
                          "UTF-8 YAML.") from None
    except OSError as exc:
        raise ConfigError(f"experiment file {str(path)!r} cannot be read: {exc.strerror or exc}.") from None
    return _parse_yaml(text, str(path))


def apply_overrides(data, overrides):
    """Apply ``KEY=VALUE`` strings (dotted keys, YAML-typed values) to a nested dict."""
    data = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise ConfigError(f"--set takes KEY=VALUE with a dotted KEY, e.g. training.epochs=3. "
                              f"Received: {_short(item)}.")
        if parts[:2] == ["tune", "parameters"] and len(parts) > 2:  # a searched key is dotted itself
            parts = [*parts[:2], ".".join(parts[2:])]
        set_key(data, parts, _parse_yaml(raw, f"--set {key}", document=False))
    _check_size(data, "the config with its --set overrides")
    return data


def set_key(data, parts, value):
    """Set the dotted key `parts` (a list of names) of the nested dict `data` to `value`, in place."""
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str):  # optimizer: adam  ->  {name: adam}
            child = {"name": child}
        elif not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def _deepcopy(data):
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def build_config(data, source="config", overrides=()):
    """Validate a plain dict into an `ExperimentConfig`, or raise one `ConfigError`.

    `overrides` are the ``--set`` ``KEY=VALUE`` strings `data` holds: an error in a key
    one of them set is reported as theirs (``--set training.epohcs=3: unknown key ...``),
    any other as `source`'s (the file).
    """
    try:
        return ExperimentConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, source, overrides)) from None


def load_config(path, overrides=(), *, check_paths=False, **updates):
    """Load an experiment file: defaults, then the file, then ``--set`` overrides.

    Args:
        path: the YAML experiment file.
        overrides: ``KEY=VALUE`` strings.
        check_paths: also check that the files and folders the experiment reads exist
            (`check_files`), so a missing one is reported before TensorFlow starts.
        **updates: dotted keys given by dedicated CLI options (``training.epochs``)
            that take precedence; ``None`` values are ignored.
    """
    overrides = [*overrides, *option_overrides(updates)]  # a bad --epochs is the option's error, not the file's
    data = apply_overrides(read_yaml(path), overrides)
    if data.get("name") is None:
        data["name"] = default_name(path)
    cfg = build_config(data, str(path), overrides)
    return check_files(cfg) if check_paths else cfg


def default_name(path):
    """The run name when the file gives none: its stem, with characters a name cannot hold as ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)
    return name if name.strip(".") else "experiment"


def option_overrides(updates):
    """``{dotted.key: value}`` from dedicated CLI options as ``KEY=VALUE`` strings; None is left out."""
    return [f"{k}={_yaml_scalar(v)}" for k, v in updates.items() if v is not None]


def _yaml_scalar(value):
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def save_config(cfg, path):
    """Write the resolved config as YAML, atomically, the paths it names absolute (`absolute_paths`)."""
    write_text(path, yaml.safe_dump(absolute_paths(cfg.to_dict()), sort_keys=False))


# --------------------------------------------------------------------------- paths the config names

PATH_KEYS = (("data", "path"), ("data", "test_path"), ("data", "exclude"), ("model", "weights"), ("finetune", "base"))


def absolute_paths(config):
    """A copy of the plain `config` with every file or folder it names absolute, against the working folder.

    A relative path in an experiment file or ``--set`` means what it means from the
    folder the command runs in. A run records its paths absolute (`save_config`), so
    that every later command finds its data from any folder; and comparing runs
    (`cnnlab.rundir.find_run`) through this function takes ``mnist.npz``,
    ``./mnist.npz`` and ``/data/mnist.npz`` for the same file, and the relative
    paths of a run saved before paths were recorded absolute as they were meant.
    Names that are no paths stay: ``model.weights: imagenet``, a keras.applications
    ``finetune.base`` (a base is a path when it exists, as `cnnlab.commands.finetune` reads it).
    """
    out = _deepcopy(config)
    for section, key in PATH_KEYS:
        node = out.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if _names_a_path(section, key, value):
            node[key] = os.path.abspath(value)
    return out


def _names_a_path(section, key, value):
    if not isinstance(value, str) or not value:
        return False
    if (section, key) == ("model", "weights"):
        return value != "imagenet"
    if (section, key) == ("finetune", "base"):
        return Path(value).exists()
    return True


# --------------------------------------------------------------------------- error messages


def _describe(exc, source="config", overrides=()):
    """Turn pydantic's errors into one line: where each comes from (`source` or one of the ``--set``
    `overrides`), the key, what is allowed, what was received."""
    found = {}  # origin -> its messages (a dict keeps them in order, once each)
    for error in exc.errors(include_url=False):
        loc = _location(error)
        item = _override_of(loc, overrides)
        shown_item = repr(item)[1:-1] if item else item  # one line, whatever was typed (a newline as \n)
        origin = f"--set {shown_item if len(shown_item) <= 80 else shown_item[:77] + '...'}" if item else source
        found.setdefault(origin, {})[_describe_one(error, loc, from_set=item is not None)] = None
    unique = [(origin, message) for origin, messages in found.items() for message in messages]
    shown = unique[:3]
    text = " ".join(f"{origin}: {' '.join(m for o, m in shown if o == origin)}"
                    for origin in dict.fromkeys(o for o, _ in shown))
    return text + (f" (and {len(unique) - 3} more)" if len(unique) > 3 else "")


def _location(error):
    """The error's location as the user's keys: pydantic puts the union member it tried into it;
    the last part of an unknown key is the user's own key, whatever it looks like."""
    loc = list(error["loc"])
    if error["type"] == "extra_forbidden":
        return [p for p in loc[:-1] if not _is_union_tag(p)] + loc[-1:]
    return [p for p in loc if not _is_union_tag(p)]


def _override_of(loc, overrides):
    """The last ``KEY=VALUE`` of `overrides` that set the key at `loc` or a section holding it, or None."""
    key = ".".join(str(p) for p in loc)
    for item in reversed(overrides):
        name = ".".join(p.strip() for p in item.partition("=")[0].split("."))
        if key == name or key.startswith(name + "."):
            return item
    return None


def _describe_one(error, loc, from_set=False):
    """One error as text; `from_set`: the key came from ``--set``, so a hint names it as ``--set`` takes it."""
    kind = error["type"]
    key = ".".join(str(p) for p in loc) or "config"
    if kind == "extra_forbidden":
        parent = _section_fields(loc[:-1])
        prefix = "".join(f"{p}." for p in loc[:-1]) if from_set else ""
        return (f"unknown key {_short(key)}.{did_you_mean(loc[-1], parent, prefix)} "
                f"Allowed here: {', '.join(parent)}.")
    sequence = _sequence_problem(error, loc, from_set)
    if sequence:
        return sequence
    if kind == "missing":
        return f"'{key}' is required."
    if kind == "value_error":
        return str(error["ctx"]["error"])
    received = error.get("input")
    if kind in ("union_tag_not_found", "union_tag_invalid"):  # a search parameter's `space`
        return (f"'{key}' must name its space: uniform, loguniform, int or choice, e.g. "
                f"{{space: uniform, low: 0.0, high: 0.5}}. Received: {_short(received)}.")
    if kind == "model_type":
        fields = _section_fields(loc)
        return (f"'{key}' must be a section: a mapping of its keys ({', '.join(fields[:4])}, ...). "
                f"Received: {_short(received)}.")
    hint = did_you_mean(received, _literal_choices(error["ctx"]["expected"])) if kind == "literal_error" else ""
    return f"'{key}': {error['msg']}. Received: {_short(received)}.{hint}"


SEQUENCE_ERRORS = ("tuple_type", "list_type", "too_short", "too_long", "float_parsing", "float_type",
                   "int_parsing", "int_type")  # a list written in another form (with an item missing: "missing")


def _sequence_problem(error, loc, from_set):
    """For a list-valued key given in another form (``--set data.image_size=32,32``): the form it takes
    (the field's description) and an example in the syntax the user wrote it in; None for other errors."""
    field_loc = list(loc)
    while field_loc and isinstance(field_loc[-1], int):
        field_loc.pop()
    item_missing = error["type"] == "missing" and len(field_loc) < len(loc)
    if not (item_missing or (error["type"] in SEQUENCE_ERRORS and field_loc == loc)):
        return None
    field = _field_at(field_loc)
    sequence = _sequence_of(field.annotation) if field is not None else None
    if sequence is None:
        return None
    key, received = ".".join(field_loc), error.get("input")
    items = _example_items(sequence, received, field.examples)
    example = ""
    if items:
        example = (f", e.g. --set {key}=[{','.join(items)}]" if from_set
                   else f", e.g. {field_loc[-1]}: [{', '.join(items)}]")
    return f"`{key}` must be {field.description or _sequence_form(sequence)}{example}. Received: {_short(received)}."


def _field_at(loc):
    """The pydantic field at `loc` (``["data", "image_size"]``), or None."""
    model, field = ExperimentConfig, None
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = _model_in(field.annotation)
    return field


def _sequence_of(annotation):
    """The ``tuple[...]`` or ``list[...]`` an annotation allows (``tuple[int, int] | None``), or None."""
    if typing.get_origin(annotation) in (tuple, list):
        return annotation
    for arg in typing.get_args(annotation):
        found = _sequence_of(arg)
        if found is not None:
            return found
    return None


def _sequence_form(sequence):
    """``a list of 2 integers`` for ``tuple[int, int]``, ``a list of numbers`` for ``list[float]``."""
    args = typing.get_args(sequence)
    item = typing.get_args(args[0])[0] if typing.get_origin(args[0]) is Annotated else args[0]
    kind = {int: "integers", float: "numbers"}.get(item, "values")
    return f"a list of {len(args)} {kind}" if typing.get_origin(sequence) is tuple else f"a list of {kind}"


def _example_items(sequence, received, examples):
    """The items of an example value: the user's own (``"32,32"`` -> ``["32", "32"]``) when they fit, else
    the field's first example, else none."""
    size = len(typing.get_args(sequence)) if typing.get_origin(sequence) is tuple else None
    if isinstance(received, str) and "," in received:
        items = [p.strip() for p in received.strip("()[] ").split(",")]
        if all(items) and size in (None, len(items)):
            return items
    return [str(v) for v in examples[0]] if examples else []


def _short(value, limit=80):
    """``repr(value)``, cut to `limit` characters (a received value may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _model_names():
    return {cls.__name__ for cls in (*Section.__subclasses__(), OptimizerConfig, ScheduleConfig)}


def _is_union_tag(part):
    """pydantic puts the union member tried into the location; users don't need it."""
    return isinstance(part, str) and (
        part.startswith(("function-", "literal[", "tuple[", "dict[", "list[", "nullable["))
        or part in ("int", "str", "float", "bool", "none", "constrained-float", "constrained-int")
        or part in _model_names()
    )


def _section_fields(loc):
    model = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
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
