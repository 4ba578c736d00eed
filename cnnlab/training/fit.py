"""Compile a model from a TrainingConfig and fit it, resumable epoch by epoch."""

import math
from pathlib import Path

from cnnlab.keras_private import record_compiled_optimizer
from cnnlab import files
from cnnlab.distribution import current
from cnnlab.errors import TrainingError
from cnnlab.models.anatomy import save_initial
from cnnlab.models.heads import auxiliary_outputs
from cnnlab.rundir import MODEL_FILE
from cnnlab.tasks import task_of
from cnnlab.training import resume
from cnnlab.training.callbacks import EpochLine, make_callbacks
from cnnlab.training.kernels import speed_up
from cnnlab.training.optimizers import build_learning_rate, build_optimizer, with_multipliers

AUX_LOSS_WEIGHT = 0.3


def compile_model(model, cfg, classes, steps_per_epoch, *, learning_rate=None, schedule=None, epochs=None,
                  multipliers=None, labels=None):
    """Compile with the configured optimizer, schedule, loss and metrics.

    Args:
        cfg: the ExperimentConfig.
        learning_rate: a rate instead of ``training.learning_rate`` and its schedule
            (fine-tuning's phase 2), with `schedule` (a ScheduleConfig) or constant.
        epochs: the epochs the schedule spans (default ``training.epochs``).
        multipliers: ``{variable path: factor}`` on the rate (discriminative rates), or None.
        labels: the training labels, for a task's balanced loss weights (multi-label), or None.
    """
    speed_up(model, cfg.runtime.fast_kernels and not cfg.deterministic)
    training = cfg.training
    if learning_rate is not None:
        training = training.model_copy(update={"learning_rate": learning_rate, "lr_schedule": schedule})
    lr = build_learning_rate(training, steps_per_epoch, epochs)
    plain = build_optimizer(training, lr)
    optimizer = with_multipliers(plain, multipliers) if multipliers else plain
    task = task_of(cfg)
    loss = task.loss(cfg, training, labels)
    scores = task.metrics(classes, cfg)
    extra = auxiliary_outputs(model)  # GoogLeNet's auxiliary classifiers, weighted 0.3 as in the paper
    execution = {"steps_per_execution": steps_per_execution(steps_per_epoch, cfg.runtime.steps_per_execution)}
    if extra:
        model.compile(optimizer=optimizer, loss=[loss] * (extra + 1),
                      loss_weights=[1.0] + [AUX_LOSS_WEIGHT] * extra, metrics=[scores] + [[]] * extra, **execution)
    else:
        model.compile(optimizer=optimizer, loss=loss, metrics=scores, **execution)
    if optimizer is not plain:
        # model.keras records the plain optimizer, so it loads in Keras without cnnlab (the per-layer rates
        # are phase 2's training detail; resume rebuilds them from the config)
        record_compiled_optimizer(model, plain)
    return model


def steps_per_execution(steps_per_epoch, most):
    """The largest divisor of `steps_per_epoch` up to `most`: Keras rounds an epoch up to a multiple of it,
    and resume needs each epoch to end where it should."""
    return max(n for n in range(1, most + 1) if steps_per_epoch % n == 0)


def monitored(name, model):
    """A metric's name in the logs: Keras prefixes the main output's name when there are several."""
    if len(model.outputs) == 1 or name.removeprefix("val_") == "loss":
        return name
    prefix = "val_" if name.startswith("val_") else ""
    return f"{prefix}{model.output_names[0]}_{name.removeprefix('val_')}"


def fit(model, data, cfg, run, *, epochs, initial_epoch=0, phase=None, state=None, steps_per_epoch=None,
        verbose="auto", tracker=None):
    """Fit `model` on `data` into `run`, going on from `state` (`cnnlab.training.resume`) if given.

    Epochs are counted on from `initial_epoch` up to `epochs` (exclusive), so two
    fine-tuning phases share one history. A state of the same phase restores the
    weights, the optimizer and the callbacks' counters; one of an earlier phase
    carries the history and the checkpoint's best on.

    `tracker` (`cnnlab.tracking.Tracker`) is told every epoch's metrics.

    Returns:
        The training state after the last epoch (None if no epoch ran).

    Raises:
        TrainingError: the loss became NaN; the best model saved before it, if any, is kept.
    """
    custom = task_of(cfg).fit
    if custom is not None:  # two networks, a custom step: the task trains itself
        return custom(model, data, cfg, run, epochs=epochs, initial_epoch=initial_epoch, phase=phase, state=state,
                      steps_per_epoch=steps_per_epoch, verbose=verbose, tracker=tracker)
    same_phase = state is not None and state.get("phase") == phase
    if same_phase:
        resume.restore_variables(model, run, state)
        if state.get("stopped"):
            return state
    start = max(initial_epoch, state["epoch"] if same_phase else 0)
    if start >= epochs:
        return state
    if state is None and current().primary:
        save_initial(model, run)  # the first layer's weights as training starts (not a resumed run's)
    callbacks = make_callbacks(cfg.callbacks, run, phase=phase, monitor=lambda name: monitored(name, model),
                               writes=current().primary)  # on several workers, process 0 alone writes
    if verbose == 2:  # off a terminal: one line per epoch rather than Keras's two
        verbose, callbacks = 0, [*callbacks, EpochLine(epochs)]
    if tracker is not None:
        from cnnlab.tracking import epoch_callback

        callbacks = [*callbacks, epoch_callback(tracker)]
    checkpointer = resume.Checkpointer(run, state, phase=phase, watched=callbacks,
                                       write_history=cfg.callbacks.csv_logger)
    outputs = len(model.outputs)
    train = data.train_dataset(initial_epoch=start, epochs=epochs, steps_per_epoch=steps_per_epoch, outputs=outputs)
    val = data.validation_dataset(outputs=outputs) if data.val is not None else None
    result = model.fit(train, validation_data=val, epochs=epochs, initial_epoch=start,
                       steps_per_epoch=data.steps_per_epoch(steps_per_epoch), callbacks=[*callbacks, checkpointer],
                       verbose=verbose,
                       shuffle=False, class_weight=task_of(cfg).class_weight(cfg, data.train.labels, data.class_names))
    losses = result.history.get("loss", [])
    if any(math.isnan(v) or math.isinf(v) for v in losses):
        kept = ("the best model saved before it is kept" if (run / MODEL_FILE).is_file() else
                "no model was saved before it: the run is kept as failed, without a model")
        raise TrainingError(f"the loss became NaN at epoch {start + len(losses)}: training stopped. "
                            f"Lower training.learning_rate (now {cfg.training.learning_rate}), add batch_norm, "
                            f"or check the data's scaling; {kept}.")
    return checkpointer.state


def preflight(cfg, data):
    """Checks that need the data, made before a run folder exists (so a bad input leaves none)."""
    task_of(cfg).class_weight(cfg, data.train.labels, data.class_names)


def keep_final_model(run, model, cfg):
    """Keep the final model when no checkpoint chose a best one."""
    path = Path(run) / MODEL_FILE
    if cfg.callbacks.model_checkpoint is None or not path.is_file():
        files.save_model(model, path)
