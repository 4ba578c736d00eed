"""`evaluate`: a run's best model on a split: its task's metrics (metrics.json), their summary and plots."""

from cnnlab.inference.evaluation import run_evaluation
from cnnlab.rundir import open_target
from cnnlab.tasks import task_of


def evaluate(target=None, *, split=None, data_dir=None, root="runs", unsafe=False, tta=False, echo=print,
             note=None):
    """Evaluate a run (default: the latest) or a .keras model, and write its metrics and plots.

    See `cnnlab.inference.evaluation.run_evaluation`: ``data_dir`` (a folder of class
    sub-folders as the test set), ``split`` (default ``evaluate.split``) and ``tta``.
    `echo` (print-like) is told the metrics; `note` (default: `echo`) which run is evaluated.

    Returns:
        The metrics dict that metrics.json holds.
    """
    note = echo if note is None else note
    opened = open_target(target, root, note=note)
    result = run_evaluation(opened, split=split, data_dir=data_dir, unsafe=unsafe, tta=tta, note=note)
    echo(task_of(opened.config()).summary(result))
    return result
