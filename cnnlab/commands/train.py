"""`train`: seed -> data -> model -> fit -> run folder. One function serves the CLI and Python."""

import contextlib
from pathlib import Path

from cnnlab import distribution, files, rundir, tracking
from cnnlab.errors import CnnlabError
from cnnlab.rundir import check_run_writable, job_fingerprint, runs_root, start_run
from cnnlab.session import device, setup
from cnnlab.tasks import task_of


def train(cfg, *, output_dir=None, fresh=False, echo=print, verbose="auto", test=False):
    """Train the experiment `cfg` into a new (or resumed) run folder and return its path.

    On several workers (``distribution``) every worker calls it; process 0 writes the run.
    With `test`, the best model is then scored on ``evaluate.split`` (`score_run`) from the
    data already loaded.
    """
    single = distribution.plan(cfg)[0] == 1
    cfg = rundir.resumable_config(cfg, output_dir, fresh)  # a run from before data.split_seed keeps its splits
    if single:  # at once, before TensorFlow starts
        check_run_writable(cfg, output_dir, fresh)
    setup(cfg, backend=True, distributed=True, echo=echo)
    if not single:  # process 0 alone writes the run; once the workers have joined, each is told why it cannot
        distribution.primary_only(lambda: check_run_writable(cfg, output_dir, fresh))
    from cnnlab.data.pipeline import load_data
    from cnnlab.models.assemble import build
    from cnnlab.training import resume
    from cnnlab.training.fit import compile_model, fit, keep_final_model, preflight

    data = distribution.primary_first(lambda: load_data(cfg))  # a download lands once
    data.describe(echo)
    distribution.agree("experiment and data", job_fingerprint(cfg, data))
    model = build(cfg, data)
    preflight(cfg, data)
    compile_model(model, cfg, data.classes, data.steps_per_epoch(cfg.training.steps_per_epoch),
                  labels=data.train.labels)
    primary = distribution.current().primary  # process 0 writes the run; other workers only train
    run = Path(distribution.primary_only(lambda: str(start_run(cfg, output_dir, fresh, echo))))
    track = tracking.tracker(cfg, run, echo) if primary else tracking.Tracker()
    with tracking.lifetime(track):
        with rundir.running(run, kind="train", device=device()) if primary else contextlib.nullcontext():
            distribution.primary_only(lambda: files.write_json(run / rundir.CLASSES_FILE, data.class_names))
            state = distribution.primary_only(lambda: resume.load(run))
            echo(f"Run: {run}" + (f" (going on after epoch {state['epoch']})" if state else ""))
            fit(model, data, cfg, run, epochs=cfg.training.epochs, state=state,
                steps_per_epoch=cfg.training.steps_per_epoch, verbose=verbose, tracker=track)
            distribution.primary_only(lambda: keep_final_model(run, model, cfg))
        if primary:
            rundir.discard(run)
        if test and primary:  # without a checkpoint the model in memory is the one finish saved
            result = score_run(run, data, echo, model=model if cfg.callbacks.model_checkpoint is None else None)
            track.result(result or {}, (result or {}).get("split", cfg.evaluate.split))
    return run


def score_run(run, data=None, echo=print, what=None, model=None):
    """Score a trained run's best model on its ``evaluate.split`` (metrics.json, plots) and echo the figures.

    The one place training hands a run to evaluation (`cnnlab.inference.evaluation`). `data`: the run's data, loaded
    already (`train`), so it is not read again; `model`: its saved model, in memory already (when
    no checkpoint chose another). Data without that split (``data.test_split:
    0``) gets a Note; a job of several workers too (evaluating would need every worker).
    """
    if distribution.current().workers > 1:
        echo(f"Note: {what or run} is not evaluated by a job of several workers: run cnnlab evaluate {run}")
        return None
    from cnnlab.inference.evaluation import run_evaluation

    opened = rundir.open_target(run)
    try:
        result = run_evaluation(opened, data=data, model=model)
    except CnnlabError as exc:  # e.g. data.test_split: 0 leaves no split to score; the run is complete all the same
        echo(f"Note: {what or run} is not evaluated: {exc}")
        return None
    except KeyboardInterrupt:  # not "run it again to resume": the run is complete, a new one would start
        echo(f"\nInterrupted while scoring: {run} is trained and complete; cnnlab evaluate {run} scores it.")
        raise SystemExit(130) from None
    echo(task_of(opened.config()).summary(result))
    return result


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
        for group in rundir.seed_groups(runs):
            echo(f"{group['group']}: {rundir.group_summary(group)}")
    if failed:
        raise CnnlabError(f"{len(failed)} of {len(cfgs)} seeds failed ({'; '.join(failed)}); the others completed. "
                          "Fix the cause and run the same command again: completed seeds are kept.")
    return runs


def _train_seed(cfg, output_dir, fresh, echo, verbose):
    """One seed of `train_seeds`: its completed run, or a new (or resumed) one; evaluated."""
    setup(cfg, backend=True)  # the backend first: Keras is imported next
    import keras

    keras.backend.clear_session()  # each seed starts from what a fresh process has
    done = None if fresh else rundir.find_run(runs_root(cfg, output_dir), cfg.name, cfg.to_dict(), "completed")
    if done is not None:
        echo(f"Seed {cfg.seed} is trained already: {done} (pass --fresh to train it again)")
    if done is None:
        return train(cfg, output_dir=output_dir, fresh=fresh, echo=echo, verbose=verbose, test=True)
    if not (done / rundir.METRICS_FILE).is_file():
        score_run(done, echo=echo, what=f"seed {cfg.seed}")
    return done
