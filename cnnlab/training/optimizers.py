"""Optimizers and learning-rate schedules, picked by name; extra keys are Keras's own arguments.

The names, each optimizer's Keras class and defaults, and the arguments (with their
value kinds) of optimizers and schedules are listed in `cnnlab.catalog`, where the
config checks them when it loads; the registries here map the names to Keras.
"""

import keras

from cnnlab.keras_private import optimizer_variable
from cnnlab import catalog
from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

OPTIMIZERS = Registry("training.optimizer.name")
for _name, _spec in catalog.OPTIMIZERS.items():
    OPTIMIZERS.add(_name, getattr(keras.optimizers, _spec.keras_class), defaults=_spec.defaults)

SCHEDULES = Registry("training.lr_schedule.name")


class DiscriminativeMixin:
    """A Keras optimizer's learning rate multiplied per variable (discriminative rates).

    ``lr_multipliers`` maps a variable's ``path`` (``block2_conv1/kernel``) to a factor;
    variables not named keep the rate. Weight decay (AdamW's ``weight_decay``) is scaled
    by the same factor, as parameter groups do in PyTorch and fastai.
    """

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})

    def _factor(self, variable):
        if not isinstance(variable, keras.Variable):  # a backend variable: find the Keras one by its index
            variable = optimizer_variable(self, variable)
        return self.lr_multipliers.get(variable.path)

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factor(variable)
        return super().update_step(gradient, variable, learning_rate if factor is None else learning_rate * factor)

    def _apply_weight_decay(self, variables):
        """Keras's decoupled weight decay (``variable -= variable * weight_decay * rate``), at each one's rate."""
        if self.weight_decay is None:
            return
        for variable in variables:
            if self._use_weight_decay(variable):
                factor = self._factor(variable)
                rate = keras.ops.cast(self.learning_rate, variable.dtype) * (1.0 if factor is None else factor)
                variable.assign(variable - variable * keras.ops.cast(self.weight_decay, variable.dtype) * rate)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


def _discriminative(base):
    """`DiscriminativeMixin` over the Keras optimizer class `base`, registered as ``cnnlab>Discriminative<Base>``."""
    name = f"Discriminative{base.__name__}"
    cls = type(name, (DiscriminativeMixin, base), {"__module__": __name__})
    return keras.saving.register_keras_serializable(package="cnnlab", name=name)(cls)


DISCRIMINATIVE = {spec.keras_class: _discriminative(getattr(keras.optimizers, spec.keras_class))
                  for spec in catalog.OPTIMIZERS.values()}


def with_multipliers(optimizer, multipliers):
    """A copy of the Keras `optimizer` whose rate is multiplied by ``multipliers[variable.path]``."""
    cls = DISCRIMINATIVE[type(optimizer).__name__]
    try:
        return cls.from_config({**optimizer.get_config(), "lr_multipliers": multipliers})  # a schedule too
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"training.optimizer with finetune.lr_mult: {exc}") from None


def build_optimizer(cfg, learning_rate):
    """A Keras optimizer from a TrainingConfig; `learning_rate` is a float or a schedule.

    The keyword arguments were checked against the catalog when the config loaded.
    """
    entry = OPTIMIZERS.get(cfg.optimizer.name)
    kwargs = {**entry.meta["defaults"], **(cfg.optimizer.model_extra or {})}
    try:
        return entry.fn(learning_rate=learning_rate, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"training.optimizer: {exc}") from None


def build_learning_rate(cfg, steps_per_epoch, epochs=None):
    """``training.learning_rate``, or a Keras schedule of it counted in epochs."""
    if cfg.lr_schedule is None:
        return cfg.learning_rate
    entry = SCHEDULES.get(cfg.lr_schedule.name)
    args = dict(cfg.lr_schedule.model_extra or {})
    return entry.fn(cfg.learning_rate, steps_per_epoch, epochs or cfg.epochs, **args)


@SCHEDULES.register("cosine")
def cosine(lr, steps, epochs, alpha=0.0, warmup_epochs=0):
    """Cosine decay to ``alpha * lr`` over the run, after an optional linear warm-up."""
    warmup = int(warmup_epochs * steps)
    return keras.optimizers.schedules.CosineDecay(
        lr / 100 if warmup else lr, decay_steps=max(1, epochs * steps - warmup), alpha=alpha,
        warmup_target=lr if warmup else None, warmup_steps=warmup)


@SCHEDULES.register("step")
def step(lr, steps, epochs, milestones=(), gamma=0.1):
    """Multiply by ``gamma`` at each epoch in ``milestones`` (He et al.'s CIFAR recipe)."""
    milestones = sorted(int(m) for m in milestones)
    if not milestones:
        raise ConfigError("training.lr_schedule.milestones must list the epochs at which to decay, e.g. [82, 123].")
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [m * steps for m in milestones], [lr * gamma ** i for i in range(len(milestones) + 1)])


@SCHEDULES.register("exponential")
def exponential(lr, steps, epochs, decay_epochs=1, gamma=0.9, staircase=False):
    """Multiply by ``gamma`` every ``decay_epochs`` epochs."""
    return keras.optimizers.schedules.ExponentialDecay(lr, int(decay_epochs * steps), gamma, staircase=staircase)


@SCHEDULES.register("onecycle")
def onecycle(lr, steps, epochs, warmup_fraction=0.3, div_factor=25.0, final_div_factor=1e4):
    """One cycle (Smith 2018): linear warm-up from ``lr / div_factor`` to ``lr``, then cosine annealing."""
    total = max(1, epochs * steps)
    warmup = int(total * warmup_fraction)
    return keras.optimizers.schedules.CosineDecay(
        lr / div_factor, decay_steps=max(1, total - warmup), alpha=1.0 / final_div_factor / div_factor,
        warmup_target=lr, warmup_steps=warmup)
