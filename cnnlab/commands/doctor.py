"""`doctor`: the health of an experiment's data, on its splits exactly as the experiment carves them.

Image problems (`cnnlab.health.images`, cleanvision) over every split at once, so a test
image that is also in the training split is seen (leakage); files that cannot be read;
the class balance; and, given a run (its model, on the splits it did not train on) or
``--folds K`` (a model cross-validated on the training split), likely label errors by
confident learning (`cnnlab.health.labels`, cleanlab). The findings are written to
``doctor.csv``, ``doctor.html`` and ``exclude.txt`` (`cnnlab.health.findings`).
"""

import sys
import time
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.health import findings as found_
from cnnlab.tasks import task_of

DOCTOR_FOLDER = "doctor"


def doctor(target=None, *, overrides=(), folds=None, output=None, root="runs", unsafe=False, echo=print):
    """Examine the data of `target` (an experiment file, or a run: the latest if None) and write the findings.

    Args:
        folds: K >= 2 to cross-validate the experiment's model on the training split for label errors.
        output: the folder to write into (default: the run's ``doctor/``, or ``<output_dir>/<name>/doctor/``).

    Returns:
        The `cnnlab.health.findings.Report`, with ``folder`` (where it was written).
    """
    from cnnlab.config import load_config
    from cnnlab.rundir import open_target

    is_experiment = target is not None and Path(target).suffix in (".yaml", ".yml") and Path(target).is_file()
    opened = None if is_experiment else open_target(target, root, note=echo)
    cfg = load_config(target, overrides, check_paths=True) if is_experiment else opened.config(overrides)
    if cfg is None:
        raise CnnlabError(f"{target} is a .keras file outside a run folder: give a run or an experiment file, "
                          "whose config says which data to examine.")
    if folds is not None and folds < 2:
        raise CnnlabError(f"--folds must be at least 2 (each fold's model predicts the images the others train "
                          f"on). Received: {folds}.")
    from cnnlab.extras import require

    require("doctor", "cnnlab doctor")
    folder = Path(output) if output else (opened.run / DOCTOR_FOLDER if opened is not None
                                          else Path(cfg.output_dir) / cfg.name / DOCTOR_FOLDER)
    if cfg.data.exclude and Path(cfg.data.exclude).resolve() == (folder / found_.EXCLUDE_FILE).resolve():
        raise CnnlabError(f"data.exclude is {cfg.data.exclude}, the list this doctor would write anew: give -o "
                          "another folder, so that the list you read stays as it is.")
    report = examine(cfg, opened, folds, unsafe, echo)
    report.folder = folder
    echo(found_.summary(report))
    written = found_.write_report(report, folder, report.images, f"cnnlab doctor: {cfg.name}")
    echo(f"Wrote {', '.join(str(p) for p in written)} ({len(report.excluded())} images listed to exclude: "
         f"train without them with --set data.exclude={written[2]})")
    return report


def examine(cfg, opened, folds, unsafe, echo):
    """Load the data as `cfg` carves it (bad files skipped, to be reported), then run every check."""
    from cnnlab.data.pipeline import load_data
    from cnnlab.health.images import SplitImages, find_image_issues
    from cnnlab.session import setup

    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"on_bad_image": "skip"})})
    setup(cfg, backend=True)
    bundle = load_data(cfg)
    bundle.describe(echo)
    task = task_of(cfg)
    images = SplitImages(bundle)
    report = found_.Report(counts=found_.class_counts(bundle), images=images)
    report.findings += found_.unreadable_findings(bundle.skipped)
    started = time.perf_counter()
    echo(f"Checking {len(images)} images for duplicates, leakage and odd images (cleanvision)...")
    found = find_image_issues(images, progress=sys.stderr.isatty())
    report.findings += found_.image_findings(found, images, bundle.class_names, task)
    report.notes += [f"{name.replace('_', ' ')}: {100 * share:.0f} % of the images, a trait of this dataset (small "
                     "or sparse images, say) rather than a problem of some: not listed one by one"
                     for name, share in found.traits.items()]
    echo(f"  done in {time.perf_counter() - started:.0f} s")
    report.findings += label_checks(cfg, opened, bundle, images, task, folds, unsafe, echo, report.notes)
    return report


def label_checks(cfg, opened, bundle, images, task, folds, unsafe, echo, notes):
    """Likely label errors on out-of-sample probabilities: the run's model on its held-out splits, the fold
    models on the training split; a note where there is neither, or the task has no such check."""
    from cnnlab.health import labels

    if not task.checks_labels:
        notes.append(f"label errors are not checked for task {task.name}.")
        return []
    probabilities = {}
    if opened is not None and opened.run is not None:
        probabilities.update(labels.run_probabilities(opened.load_model(unsafe), bundle))
    if folds:
        probabilities["train"] = labels.cross_validated_probabilities(cfg, bundle, folds, echo)
    elif "train" not in probabilities:
        notes.append("the training split's labels are not checked: give --folds K (K models cross-validated on it)"
                     + ("" if opened is not None else ", or a run to check the validation and test splits"))
    out = []
    for split, probs in probabilities.items():
        examples = bundle.split(split)
        issues = task.label_issues(examples.labels, probs)
        echo(f"Labels ({split}): {len(issues)} of {len(examples)} likely wrong (cleanlab, confident learning)")
        out += found_.label_findings(split, issues, examples, images, bundle.class_names, task)
    return out
