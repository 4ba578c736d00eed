"""Every name a config may pick, one list per kind, importable without TensorFlow.

The schema (`cnnlab.config`) validates against these lists and every `Registry`
accepts only the names listed here for its key, so the two cannot drift apart and
``cnnlab check`` can reject a typo before Keras is imported. The lists that mirror
Keras (backbones, optimizer arguments, activations, initializers) are compared with
the installed Keras by the tests, so a Keras upgrade is noticed.
"""

import difflib
import fnmatch
from dataclasses import dataclass, field

# --------------------------------------------------------------------------- architectures

# ModelConfig fields a builder may or may not honour; each architecture lists the ones it does.
MODEL_OPTIONS = ("activation", "kernel_initializer", "batch_norm", "dropout", "kernel_regularizer",
                 "head", "local_response_norm", "aux_logits", "weights", "width")
DENSE_OPTIONS = ("activation", "kernel_initializer", "batch_norm", "dropout", "kernel_regularizer")
CNN_OPTIONS = DENSE_OPTIONS + ("head",)
APP_OPTIONS = ("weights", "dropout", "kernel_initializer", "kernel_regularizer")
RESNET_OPTIONS = ("activation", "kernel_initializer", "kernel_regularizer")
RESNET_PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition"
PIXEL_OPTIONS = DENSE_OPTIONS + ("width",)
CLASSIFYING = ("classification", "multilabel")  # the tasks of a network with one output row per image


@dataclass(frozen=True)
class Architecture:
    """One ``model.architecture``: its family, the reference and the options it honours."""

    name: str
    family: str
    paper: str
    options: tuple
    tasks: tuple = CLASSIFYING  # the tasks it can serve: a class (or label) row per image, or a class per pixel


# name: (keras.applications module, constructor). A name that is also a zoo architecture
# (vgg16, resnet50, ...) is that architecture's pretrained twin, used with model.weights.
APPLICATIONS = {
    "convnext_base": ("convnext", "ConvNeXtBase"), "convnext_large": ("convnext", "ConvNeXtLarge"),
    "convnext_small": ("convnext", "ConvNeXtSmall"), "convnext_tiny": ("convnext", "ConvNeXtTiny"),
    "convnext_xlarge": ("convnext", "ConvNeXtXLarge"),
    "densenet121": ("densenet", "DenseNet121"), "densenet169": ("densenet", "DenseNet169"),
    "densenet201": ("densenet", "DenseNet201"),
    **{f"efficientnet_b{i}": ("efficientnet", f"EfficientNetB{i}") for i in range(8)},
    **{f"efficientnet_v2_{v.lower()}": ("efficientnet_v2", f"EfficientNetV2{v}")
       for v in ("B0", "B1", "B2", "B3", "L", "M", "S")},
    "inception_resnet_v2": ("inception_resnet_v2", "InceptionResNetV2"),
    "inception_v3": ("inception_v3", "InceptionV3"),
    "mobilenet": ("mobilenet", "MobileNet"), "mobilenet_v2": ("mobilenet_v2", "MobileNetV2"),
    "mobilenet_v3_large": ("mobilenet_v3", "MobileNetV3Large"),
    "mobilenet_v3_small": ("mobilenet_v3", "MobileNetV3Small"),
    "nasnet_large": ("nasnet", "NASNetLarge"), "nasnet_mobile": ("nasnet", "NASNetMobile"),
    "resnet101": ("resnet", "ResNet101"), "resnet152": ("resnet", "ResNet152"), "resnet50": ("resnet", "ResNet50"),
    "resnet101v2": ("resnet_v2", "ResNet101V2"), "resnet152v2": ("resnet_v2", "ResNet152V2"),
    "resnet50v2": ("resnet_v2", "ResNet50V2"),
    "vgg16": ("vgg16", "VGG16"), "vgg19": ("vgg19", "VGG19"),
    "xception": ("xception", "Xception"),
}

# (family, paper, options, names): the zoo, in the order `cnnlab models` lists it.
_ZOO = (
    ("perceptron", "Rosenblatt 1958; softmax regression", ("kernel_initializer", "kernel_regularizer"), ("slp",)),
    ("perceptron", "Rumelhart, Hinton & Williams 1986", DENSE_OPTIONS, ("mlp",)),
    ("scratch", "Saito, Deep Learning from Scratch (2016) ch.7", CNN_OPTIONS, ("simple_cnn",)),
    ("scratch", "Saito, Deep Learning from Scratch (2016) ch.8", CNN_OPTIONS, ("deep_cnn",)),
    ("alexnet", "Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs",
     CNN_OPTIONS + ("local_response_norm",), ("alexnet",)),
    ("vgg", "Simonyan & Zisserman 2014, Very Deep ConvNets", CNN_OPTIONS + ("weights",),
     ("vgg11", "vgg13", "vgg16", "vgg19")),
    ("inception", "Szegedy et al. 2014, Going Deeper with Convolutions",
     DENSE_OPTIONS + ("local_response_norm", "aux_logits"), ("googlenet",)),
    ("resnet", RESNET_PAPER, RESNET_OPTIONS + ("weights",),
     ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")),
    ("resnet-cifar", RESNET_PAPER, RESNET_OPTIONS, ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")),
    ("fcn", "Long, Shelhamer & Darrell 2015, Fully Convolutional Networks for Semantic Segmentation",
     PIXEL_OPTIONS + ("weights",), ("fcn32s", "fcn16s", "fcn8s")),
    ("unet", "Ronneberger, Fischer & Brox 2015, U-Net: Convolutional Networks for Biomedical Image Segmentation",
     PIXEL_OPTIONS, ("unet",)),
)
# The classic networks the tool teaches, from the perceptron to ResNet (the "seed networks"):
# what `cnnlab benchmark` compares when given no PATTERN.
SEED_NETWORKS = ("mlp", "deep_cnn", "alexnet", "vgg16", "googlenet", "resnet50")
PIXEL_FAMILIES = ("fcn", "unet")  # the zoo's segmentation networks: a class per pixel
BODIES = {"fcn32s": "vgg16", "fcn16s": "vgg16", "fcn8s": "vgg16"}  # the backbone whose weights a body takes


def _architectures():
    zoo = {name: Architecture(name, family, paper, options,
                              ("segmentation",) if family in PIXEL_FAMILIES else CLASSIFYING)
           for family, paper, options, names in _ZOO for name in names}
    backbones = {name: Architecture(name, "keras.applications", f"keras.applications.{constructor}", APP_OPTIONS)
                 for name, (_, constructor) in sorted(APPLICATIONS.items()) if name not in zoo}
    return {**zoo, **backbones}


ARCHITECTURES = _architectures()


def backbone_module(architecture, weights=None):
    """The keras.applications module whose ``preprocess_input`` fits `architecture`, or None.

    A backbone always has one; a zoo twin (``vgg16``...) only when built with `weights`, as a network
    over a backbone's body (FCN's VGG16, `BODIES`).
    """
    architecture = BODIES.get(architecture, architecture)
    if architecture not in APPLICATIONS:
        return None
    is_backbone = ARCHITECTURES[architecture].family == "keras.applications"
    return APPLICATIONS[architecture][0] if is_backbone or weights else None


def is_backbone(name):
    """Whether `name` is a keras.applications backbone or a zoo twin of one (a fine-tuning base)."""
    return name in APPLICATIONS


# --------------------------------------------------------------------------- parameter counts

COUNTS_SHAPE = (224, 224, 3)
COUNTS_CLASSES = 1000

# (parameters, multiply-adds per image) of each architecture built with the model section's
# defaults for COUNTS_SHAPE images and COUNTS_CLASSES classes, the multiply-adds counted by
# TensorFlow's profiler (`cnnlab.benchmarking.flops`, as `cnnlab benchmark` counts them); None
# where that shape does not build, and for the segmentation networks (a 1,000-class FCN's
# upsampling alone would hold billions of weights: `cnnlab models fcn8s --params --classes 21`
# builds one). Written by `python -m cnnlab.models.summary`; tests/test_runs_models.py rebuilds
# a sample of it (and, marked slow, all of it), so a changed architecture is noticed.
PARAMETER_COUNTS = {
    "slp": (150_529_000, 150_528_000),
    "mlp": (38_697_320, 38_695_936),
    "simple_cnn": (36_403_380, 145_300_000),
    "deep_cnn": (2_631_930, 497_070_928),
    "alexnet": (62_378_344, 1_135_256_096),
    "vgg11": (132_863_336, 7_609_090_048),
    "vgg13": (133_047_848, 11_308_466_176),
    "vgg16": (138_357_544, 15_470_264_320),
    "vgg19": (143_667_240, 19_632_062_464),
    "googlenet": (6_998_552, 1_582_671_872),
    "resnet18": (11_703_912, 1_814_073_344),
    "resnet34": (21_823_208, 3_663_761_408),
    "resnet50": (25_636_712, 3_857_973_248),
    "resnet101": (44_707_176, 7_570_194_432),
    "resnet152": (60_419_944, 11_282_415_616),
    "resnet20": (339_176, 1_999_878_656),
    "resnet32": (534_952, 3_387_144_704),
    "resnet44": (730_728, 4_774_410_752),
    "resnet56": (926_504, 6_161_676_800),
    "resnet110": (1_807_496, 12_404_374_016),
    "fcn32s": None,
    "fcn16s": None,
    "fcn8s": None,
    "unet": None,
    "convnext_base": (88_591_464, 15_354_729_472),
    "convnext_large": (197_767_336, 34_361_433_600),
    "convnext_small": (50_223_688, 8_683_712_256),
    "convnext_tiny": (28_589_128, 4_455_531_264),
    "convnext_xlarge": (350_196_968, 60_921_030_656),
    "densenet121": (8_062_504, 2_834_161_664),
    "densenet169": (14_307_880, 3_359_843_328),
    "densenet201": (20_242_984, 4_291_365_888),
    "efficientnet_b0": (5_330_571, 385_814_752),
    "efficientnet_b1": (7_856_239, 569_651_680),
    "efficientnet_b2": (9_177_569, 658_963_440),
    "efficientnet_b3": (12_320_535, 962_708_240),
    "efficientnet_b4": (19_466_823, 1_503_710_432),
    "efficientnet_b5": (30_562_527, 2_356_493_184),
    "efficientnet_b6": (43_265_143, 3_360_166_848),
    "efficientnet_b7": (66_658_687, 5_169_865_152),
    "efficientnet_v2_b0": (7_200_312, 718_086_176),
    "efficientnet_v2_b1": (8_212_124, 1_015_859_232),
    "efficientnet_v2_b2": (10_178_374, 1_168_830_832),
    "efficientnet_v2_b3": (14_467_622, 1_609_978_624),
    "efficientnet_v2_l": (119_027_848, 12_231_188_544),
    "efficientnet_v2_m": (54_431_388, 5_362_207_200),
    "efficientnet_v2_s": (21_612_360, 2_849_895_872),
    "inception_resnet_v2": (55_873_736, 6_468_961_120),
    "inception_v3": (23_851_784, 2_837_921_120),
    "mobilenet": (4_253_864, 568_740_352),
    "mobilenet_v2": (3_538_984, 300_774_272),
    "mobilenet_v3_large": (3_957_352, 215_040_960),
    "mobilenet_v3_small": (1_516_120, 55_472_576),
    "nasnet_large": (88_949_818, 10_283_796_000),
    "nasnet_mobile": (5_326_716, 563_638_816),
    "resnet101v2": (44_675_560, 7_194_476_544),
    "resnet152v2": (60_380_648, 10_906_697_728),
    "resnet50v2": (25_613_800, 3_482_255_360),
    "xception": (22_910_480, 4_552_879_072),
}


def families():
    """The architecture families, in the order `cnnlab models` lists them."""
    return list(dict.fromkeys(spec.family for spec in ARCHITECTURES.values()))


def select_architectures(pattern=None, family=None):
    """The `Architecture` entries whose name matches the glob `pattern` (as timm's ``list_models``) in `family`.

    Raises:
        CnnlabError: `family` is unknown (the message lists the families), or nothing matches.
    """
    from cnnlab.errors import CnnlabError, one_of

    if family is not None and family not in families():
        raise CnnlabError(one_of("--family", families(), family))
    pattern = (pattern or "*").lower()
    found = [spec for name, spec in ARCHITECTURES.items()
             if fnmatch.fnmatchcase(name, pattern) and family in (None, spec.family)]
    if not found:
        where = f" in family {family!r}" if family else ""
        near = closest(pattern.strip("*?[]"), ARCHITECTURES, n=3)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise CnnlabError(f"no architecture matches {pattern!r}{where}: PATTERN is a glob such as 'resnet*' "
                          f"(`cnnlab models` lists them all).{hint}")
    return found


def architecture_table(architectures, counts=None):
    """Lines of ``cnnlab models``: name, family, [parameters, multiply-adds,] paper.

    `counts` maps a name to ``(parameters, multiply-adds)`` or to why it has none.
    """
    name_width = max(len("name"), *(len(spec.name) for spec in architectures)) + 2  # the header fits too
    family_width = max(len("family"), *(len(spec.family) for spec in architectures)) + 2
    header = f"{'name':<{name_width}}{'family':<{family_width}}"
    lines = [header + (f"{'parameters':>13}{'mult-adds':>13}  " if counts is not None else "") + "paper"]
    for spec in architectures:
        line = f"{spec.name:<{name_width}}{spec.family:<{family_width}}"
        if counts is not None:
            value = counts.get(spec.name)
            if isinstance(value, tuple):
                line += f"{value[0]:>13,}{value[1] / 1e6:>12,.1f}M  "
            else:
                line += f"{'-':>13}{'-':>13}  " + (f"({str(value)[:60]}) " if value else "")
        lines.append(line + spec.paper)
    return lines


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """One ``data.dataset``: what is known without reading it, and what ``data.path`` must be."""

    shape: tuple | None = None  # (H, W, C) of the images
    class_names: tuple | None = None
    path: str | None = None  # "folder" or "file" when data.path is required
    tasks: tuple = ("classification",)  # the tasks whose labels it holds

    @property
    def classes(self):
        return None if self.class_names is None else len(self.class_names)


def _numbered(count):
    return tuple(str(i) for i in range(count))


FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATASETS = {
    "mnist": Dataset((28, 28, 1), _numbered(10)),
    "fashion_mnist": Dataset((28, 28, 1), FASHION),
    "cifar10": Dataset((32, 32, 3), CIFAR10),
    "cifar100": Dataset((32, 32, 3), _numbered(100)),
    "digits": Dataset((8, 8, 1), _numbered(10)),
    "directory": Dataset(path="folder", tasks=("classification", "segmentation")),  # class folders; images/ masks/
    "npz": Dataset(path="file", tasks=("classification", "multilabel", "segmentation")),
    "csv": Dataset(path="file", tasks=("multilabel",)),
    "oxford_pets": Dataset(tasks=("segmentation",), class_names=("background", "pet", "border")),
}
TASKS = ("classification", "multilabel", "segmentation")  # task: what kind of problem (cnnlab.tasks)
SCALINGS = ("unit", "symmetric", "standardize", "none", "backbone")
ENGINES = ("layers", "generator")
BACKENDS = ("tensorflow", "jax")  # Keras backends cnnlab runs on (runtime.backend)

# --------------------------------------------------------------------------- training

# Value kinds of keyword arguments, as `value_problem` checks them.
NUMBER, OPTIONAL_NUMBER, FLAG = "a number", "a number or null", "true or false"
OPTIONAL_INTEGER, INTEGERS = "an integer or null", "a list of epoch numbers (integers >= 0), e.g. [82, 123]"

_BASE_OPTIMIZER = {"weight_decay": OPTIONAL_NUMBER, "clipnorm": OPTIONAL_NUMBER, "clipvalue": OPTIONAL_NUMBER,
                   "global_clipnorm": OPTIONAL_NUMBER, "use_ema": FLAG, "ema_momentum": NUMBER,
                   "ema_overwrite_frequency": OPTIONAL_INTEGER, "loss_scale_factor": OPTIONAL_NUMBER,
                   "gradient_accumulation_steps": OPTIONAL_INTEGER}
_ADAM = {"beta_1": NUMBER, "beta_2": NUMBER, "epsilon": NUMBER, "amsgrad": FLAG}

# Keras optimizer class: its keyword arguments besides learning_rate and name, with their kinds.
KERAS_OPTIMIZERS = {
    "SGD": {"momentum": NUMBER, "nesterov": FLAG, **_BASE_OPTIMIZER},
    "Adagrad": {"initial_accumulator_value": NUMBER, "epsilon": NUMBER, **_BASE_OPTIMIZER},
    "RMSprop": {"rho": NUMBER, "momentum": NUMBER, "epsilon": NUMBER, "centered": FLAG, **_BASE_OPTIMIZER},
    "Adam": {**_ADAM, **_BASE_OPTIMIZER},
    "AdamW": {**_ADAM, **_BASE_OPTIMIZER, "weight_decay": NUMBER},
}


@dataclass(frozen=True)
class Optimizer:
    """One ``training.optimizer.name``: a Keras optimizer class and the defaults cnnlab gives it."""

    keras_class: str
    defaults: dict = field(default_factory=dict)

    @property
    def args(self):
        """Keyword arguments the Keras class takes (besides learning_rate and name), with their kinds."""
        return KERAS_OPTIMIZERS[self.keras_class]


OPTIMIZERS = {
    "sgd": Optimizer("SGD"),
    "momentum": Optimizer("SGD", {"momentum": 0.9}),
    "nesterov": Optimizer("SGD", {"momentum": 0.9, "nesterov": True}),
    "adagrad": Optimizer("Adagrad"),
    "rmsprop": Optimizer("RMSprop"),
    "adam": Optimizer("Adam"),
    "adamw": Optimizer("AdamW"),
}

# Schedule: its arguments and their kinds (the functions in cnnlab.training.optimizers take exactly these).
SCHEDULES = {
    "cosine": {"alpha": NUMBER, "warmup_epochs": NUMBER},
    "step": {"milestones": INTEGERS, "gamma": NUMBER},
    "exponential": {"decay_epochs": NUMBER, "gamma": NUMBER, "staircase": FLAG},
    "onecycle": {"warmup_fraction": NUMBER, "div_factor": NUMBER, "final_div_factor": NUMBER},
}
REQUIRED_SCHEDULE_ARGS = {"step": ("milestones",)}

# Keras's activations and initializers usable by name alone (threshold, constant and stft need arguments).
ACTIVATIONS = ("celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
               "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu",
               "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign",
               "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink")
INITIALIZERS = ("glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity", "lecun_normal",
                "lecun_uniform", "ones", "orthogonal", "random_normal", "random_uniform", "truncated_normal",
                "variance_scaling", "zeros")


# The metrics training logs per task, beside the loss (classification's depend on evaluate.top_k).
TASK_METRICS = {"multilabel": ("pr_auc", "f1"),  # the precision-recall AUC (macro), micro F1 at 0.5
                "segmentation": ("pixel_accuracy", "mean_iou")}  # both without data.ignore_index's pixels


# The figure that stands for a task's result in metrics.json (the runs table's test_score, first in its headline).
TASK_SCORES = {"classification": "accuracy", "multilabel": "mean_average_precision", "segmentation": "mean_iou"}


def direction(monitor, mode):
    """``min`` or ``max`` for a monitored metric: `mode`, or read from the name when ``auto`` (``auto`` still for a
    name that says neither: Keras then asks the metric)."""
    if mode != "auto":
        return mode
    if monitor.endswith(("loss", "error")):
        return "min"
    return "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1")) else "auto"


def metric_direction(metric):
    """Whether a logged metric is better higher (``maximize``) or lower (``minimize``: the losses), by `direction`;
    every metric cnnlab logs but the losses is better higher."""
    return "minimize" if direction(metric, "auto") == "min" else "maximize"


# tune.sampler and tune.pruner: Optuna's samplers and pruners by name (cnnlab.tuning.study builds them).
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
# Config sections a search may not change: what names and places the runs, and the search itself.
UNTUNABLE = ("name", "output_dir", "task", "tune", "tracking", "provenance", "distribution")


def logged_metrics(top_k, classes=None, task="classification"):
    """The metric names training logs (and callbacks may monitor), with and without ``val_``.

    Classification: accuracy, and top-k accuracy for each k in `top_k` above 1 and below
    the class count; another task: its `TASK_METRICS`.
    """
    names = ["loss", *TASK_METRICS.get(task, ["accuracy"] + [f"top{k}_accuracy" for k in top_k
                                                           if k > 1 and (classes is None or k < classes)])]
    return names + [f"val_{n}" for n in names]


# --------------------------------------------------------------------------- lookup helpers


def value_problem(value, kind):
    """Why `value` is not of `kind` (one of the kinds above), or None when it is."""
    if kind in (OPTIONAL_NUMBER, OPTIONAL_INTEGER) and value is None:
        return None
    if kind in (NUMBER, OPTIONAL_NUMBER):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == OPTIONAL_INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == FLAG:
        ok = isinstance(value, bool)
    else:  # INTEGERS
        ok = (isinstance(value, list) and len(value) > 0
              and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
    return None if ok else f"must be {kind}"


def closest(word, names, n=5):
    """Up to `n` of `names` closest to `word` (for "did you mean" lists)."""
    return difflib.get_close_matches(str(word), list(names), n=n, cutoff=0.4)


# Registry key -> the names that registry may hold.
CHOICES = {
    "task": TASKS,
    "model.architecture": ARCHITECTURES,
    "model.weights": APPLICATIONS,
    "data.dataset": DATASETS,
    "data.scaling": SCALINGS,
    "augmentation.engine": ENGINES,
    "training.optimizer.name": OPTIMIZERS,
    "training.lr_schedule.name": SCHEDULES,
}
