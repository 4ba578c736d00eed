"""`train`: seed -> data -> model -> fit -> run folder. One function serves the CLI and Python."""

import contextlib
import os
from pathlib import Path

from cnnlab import artifacts, distribution, files
from cnnlab.config import save_config
from cnnlab.errors import CnnlabError


def setup(cfg, backend=False, distributed=False, echo=print):
    """Seed every generator and set the dtype policy before anything is built.

    With `backend` (the commands that train: train, finetune, lr-find), first make Keras
    run on ``runtime.backend``. The others run on whatever Keras runs on (TensorFlow
    unless ``KERAS_BACKEND`` says otherwise): a model's weights load on any backend.
    `distributed` (`train`): join the other workers of ``distribution``, if any.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend:
        from cnnlab.runtime import use_backend

        job = distribution.plan(cfg, distributed)  # a job this command cannot run fails before Keras starts
        use_backend(cfg.runtime.backend)
        if distributed:
            distribution.start(cfg, job, echo)  # joins the other workers, if any, before JAX computes anything
    import keras

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and keras.backend.backend() == "tensorflow":  # JAX's CPU kernels are deterministic
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.config.set_dtype_policy(cfg.training.precision)


def device():
    """The devices Keras computes on, e.g. ``cpu:0`` (recorded in run.json)."""
    import keras

    return ", ".join(keras.distribution.list_devices())


def build(cfg, data):
    """The experiment's model for `data`, scaling included."""
    from cnnlab.data.scaling import needs_stats

    stats = data.channel_stats() if needs_stats(cfg.data.scaling) else None
    return assemble(cfg, data.input_shape, data.classes, stats)


def assemble(cfg, shape, classes, stats=None):
    """The model of `cfg` for `shape` images and `classes` classes, its scaling layer first."""
    from cnnlab.data.scaling import scaling_layers
    from cnnlab.models.registry import build_model

    return build_model(cfg.model, shape, classes, preprocessing=scaling_layers(cfg.data.scaling, cfg.model, stats))


def describe(data, echo):
    splits = ", ".join(f"{n} {len(getattr(data, n))}" for n in ("train", "val", "test")
                       if getattr(data, n) is not None)
    echo(f"Data: {splits} images of {data.input_shape}, {data.classes} classes")
    if data.skipped:
        echo(f"Skipped {len(data.skipped)} bad image file(s) (data.on_bad_image: skip), e.g. {data.skipped[0][0]}")


def check(cfg, echo=print, layers=False):
    """Build the model of `cfg` and print its summary (with `layers`, a numbered layer table); no training.

    Keras's datasets are described from the registry (shape, classes), so this
    needs no download; files and folders are read to learn their shape.
    """
    from cnnlab.data.pipeline import describe_data

    setup(cfg)
    shape, classes = describe_data(cfg)
    echo(f"Data: images of {shape}, {classes} classes")
    # Standardisation's statistics change no parameter count: neutral ones do for the summary.
    model = assemble(cfg, shape, classes, {"mean": [0.0] * shape[-1], "variance": [1.0] * shape[-1]})
    if layers:
        for line in layer_table(model):
            echo(line)
    else:
        model.summary(print_fn=lambda line, **_: echo(line))
    return model


def layer_table(model):
    """Lines of a table of every layer: index, name, type and parameters (what ``--freeze`` counts)."""
    from cnnlab.console import aligned

    rows = [(str(i), layer.name, type(layer).__name__, f"{layer.count_params():,}")
            for i, layer in enumerate(model.layers)]
    return aligned([("index", "name", "type", "parameters"), *rows], right=(0, 3))


def augment_preview(cfg, n=16, output="preview.png", echo=print):
    """Write a PNG of `n` training images beside their augmented versions; return its path."""
    import numpy as np

    from cnnlab import plots
    from cnnlab.data.augment import augment_images, is_active
    from cnnlab.data.pipeline import load_data, make_dataset

    files.check_writable_file(output, "the preview", "Give -o a .png in a folder you can write to.")
    setup(cfg)
    data = load_data(cfg)
    pick = np.random.default_rng(cfg.seed).choice(len(data.train), size=min(n, len(data.train)), replace=False)
    examples = data.train.take(np.sort(pick))
    originals, _ = next(iter(make_dataset(examples, data.input_shape, len(examples))))
    originals = originals.numpy()
    if not is_active(cfg.augmentation):
        echo("Note: the experiment enables no augmentation; both columns are the same.")
    augmented = augment_images(cfg.augmentation, originals, data.input_shape, data.classes, cfg.seed)
    plots.augmentation_grid(originals, augmented, output)
    echo(f"Wrote {output} ({len(originals)} images, engine {cfg.augmentation.engine})")
    return Path(output)


def runs_root(cfg, output_dir=None):
    """Where the runs of `cfg` go: ``--output-dir`` if given, else ``output_dir`` of the config."""
    return Path(output_dir or cfg.output_dir)


RUNS_FIX = "Set output_dir (or --output-dir) to a folder you can write to."


def check_run_writable(cfg, output_dir=None, fresh=False):
    """Fail before any data is read if the run of `cfg` could not be written.

    The run goes into the interrupted run `start_run` would resume (unless `fresh`), or
    into a new folder under ``<output_dir>/<name>``.
    """
    root = runs_root(cfg, output_dir)
    run = None if fresh else artifacts.find_resumable(root, cfg.name, cfg.to_dict())
    if run is not None:
        files.check_writable(run, "the interrupted run", "Make it writable for you, or pass --fresh to start a "
                             "new run elsewhere (--output-dir).")
    else:
        files.check_writable(root / cfg.name, "the runs folder", RUNS_FIX)


def start_run(cfg, output_dir, fresh, echo):
    """Resume the newest interrupted run of this exact config, or make a new run folder; either locked."""
    root = runs_root(cfg, output_dir)
    run = None if fresh else artifacts.find_resumable(root, cfg.name, cfg.to_dict())
    if run is not None:
        artifacts.lock(run)
        echo(f"Resuming the interrupted run {run} (pass --fresh to start a new one)")
        return run
    run = artifacts.new_run_dir(root, cfg.name)
    artifacts.lock(run)  # before config.yaml makes it a run that another process could take up
    # how many processes trained the run is not what the run is: finetune and evaluate run it on one
    update = {"provenance": artifacts.provenance(), "distribution": type(cfg.distribution)()}
    save_config(cfg.model_copy(update=update), run / artifacts.CONFIG_FILE)
    return run


def preflight(cfg, data):
    """Checks that need the data, made before a run folder exists (so a bad input leaves none)."""
    from cnnlab.training.fit import class_weight

    class_weight(cfg, data.train.labels, data.class_names)


def train(cfg, *, output_dir=None, fresh=False, echo=print, verbose="auto", test=False):
    """Train the experiment `cfg` into a new (or resumed) run folder and return its path.

    On several workers (``distribution``) every worker calls it; process 0 writes the run.
    With `test`, the best model is then scored on ``evaluate.split`` (`score_run`) from the
    data already loaded.
    """
    single = distribution.plan(cfg)[0] == 1
    if single:  # at once, before TensorFlow starts
        check_run_writable(cfg, output_dir, fresh)
    setup(cfg, backend=True, distributed=True, echo=echo)
    if not single:  # process 0 alone writes the run; once the workers have joined, each is told why it cannot
        distribution.primary_only(lambda: check_run_writable(cfg, output_dir, fresh))
    from cnnlab.data.pipeline import load_data
    from cnnlab.training import resume
    from cnnlab.training.fit import compile_model, fit

    data = distribution.primary_first(lambda: load_data(cfg))  # a download lands once
    describe(data, echo)
    distribution.agree("experiment and data", job_fingerprint(cfg, data))
    model = build(cfg, data)
    preflight(cfg, data)
    compile_model(model, cfg, data.classes, data.steps_per_epoch(cfg.training.steps_per_epoch))
    primary = distribution.current().primary  # process 0 writes the run; other workers only train
    run = Path(distribution.primary_only(lambda: str(start_run(cfg, output_dir, fresh, echo))))
    with artifacts.running(run, kind="train", device=device()) if primary else contextlib.nullcontext():
        distribution.primary_only(lambda: files.write_json(run / artifacts.CLASSES_FILE, data.class_names))
        state = distribution.primary_only(lambda: resume.load(run))
        echo(f"Run: {run}" + (f" (going on after epoch {state['epoch']})" if state else ""))
        fit(model, data, cfg, run, epochs=cfg.training.epochs, state=state,
            steps_per_epoch=cfg.training.steps_per_epoch, verbose=verbose)
        distribution.primary_only(lambda: finish(run, model, cfg))
    if primary:
        resume.discard(run)
    if test and primary:  # without a checkpoint the model in memory is the one finish saved
        score_run(run, data, echo, model=model if cfg.callbacks.model_checkpoint is None else None)
    return run


def score_run(run, data=None, echo=print, what=None, model=None):
    """Score a trained run's best model on its ``evaluate.split`` (metrics.json, plots) and echo the figures.

    The one place training hands a run to `cnnlab.evaluate`. `data`: the run's data, loaded
    already (`train`), so it is not read again; `model`: its saved model, in memory already (when
    no checkpoint chose another). Data without that split (``data.test_split:
    0``) gets a Note; a job of several workers too (evaluating would need every worker).
    """
    if distribution.current().workers > 1:
        echo(f"Note: {what or run} is not evaluated by a job of several workers: run cnnlab evaluate {run}")
        return None
    from cnnlab.evaluate import evaluate, format_metrics

    try:
        result = evaluate(run, data=data, model=model, echo=lambda _: None)
    except CnnlabError as exc:  # e.g. data.test_split: 0 leaves no split to score; the run is complete all the same
        echo(f"Note: {what or run} is not evaluated: {exc}")
        return None
    except KeyboardInterrupt:  # not "run it again to resume": the run is complete, a new one would start
        echo(f"\nInterrupted while scoring: {run} is trained and complete; cnnlab evaluate {run} scores it.")
        raise SystemExit(130) from None
    echo(format_metrics(result))
    return result


def job_fingerprint(cfg, data):
    """What every worker of a job must share: the config but where files are, the classes, the splits' sizes."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("distribution", "provenance", "output_dir")}
    config["data"] = {k: v for k, v in config["data"].items() if k not in ("path", "test_path")}
    sizes = [len(e) if e is not None else 0 for e in (data.train, data.val, data.test)]
    return {"config": config, "classes": data.class_names, "sizes": sizes, "shape": list(data.input_shape)}


def train_seeds(cfgs, *, output_dir=None, fresh=False, echo=print, verbose="auto"):
    """Train one experiment once per seed into sibling runs, each evaluated; return the completed runs.

    `cfgs` are the experiment's configs, equal but for ``seed``. Each run is trained
    (resuming an interrupted one, as `train` does), then evaluated on its
    ``evaluate.split`` so that `cnnlab runs` and `report` show the group's mean and
    spread. The same command run again goes on where it stopped: a seed whose config
    already has a completed run is not trained again (``fresh`` trains every seed anew).
    A seed that fails (a NaN loss, say) does not stop the others; the failures are
    raised together at the end.
    """
    for cfg in cfgs:  # every seed's run folder, before the first seed trains
        check_run_writable(cfg, output_dir, fresh)
    failed, runs = [], []
    for number, cfg in enumerate(cfgs, 1):
        echo(f"Seed {cfg.seed} ({number} of {len(cfgs)})")
        try:
            runs.append(_train_seed(cfg, output_dir, fresh, echo, verbose))
        except CnnlabError as exc:
            echo(f"Seed {cfg.seed} failed: {exc}")
            failed.append(f"seed {cfg.seed}: {exc}")
    if len(runs) > 1:
        for group in artifacts.seed_groups(runs):
            echo(f"{group['group']}: {artifacts.group_summary(group)}")
    if failed:
        raise CnnlabError(f"{len(failed)} of {len(cfgs)} seeds failed ({'; '.join(failed)}); the others completed. "
                          "Fix the cause and run the same command again: completed seeds are kept.")
    return runs


def _train_seed(cfg, output_dir, fresh, echo, verbose):
    """One seed of `train_seeds`: its completed run, or a new (or resumed) one; evaluated."""
    setup(cfg, backend=True)  # the backend first: Keras is imported next
    import keras

    keras.backend.clear_session()  # each seed starts from what a fresh process has
    done = None if fresh else artifacts.find_run(runs_root(cfg, output_dir), cfg.name, cfg.to_dict(), "completed")
    if done is not None:
        echo(f"Seed {cfg.seed} is trained already: {done} (pass --fresh to train it again)")
    if done is None:
        return train(cfg, output_dir=output_dir, fresh=fresh, echo=echo, verbose=verbose, test=True)
    if not (done / artifacts.METRICS_FILE).is_file():
        score_run(done, echo=echo, what=f"seed {cfg.seed}")
    return done


def finish(run, model, cfg):
    """Keep the final model when no checkpoint chose a best one."""
    path = Path(run) / artifacts.MODEL_FILE
    if cfg.callbacks.model_checkpoint is None or not path.is_file():
        files.save_model(model, path)
