"""What a study leaves in its folder, at its end and on Ctrl-C: ``trials.csv``, ``best.yaml`` (the best
trial's experiment, ready for ``cnnlab train``), ``importances.json``, Optuna's matplotlib plots
(optimisation history, parallel coordinates, importances) and ``report.html``, a page of all of it."""

import base64
import csv
import html
import io
import json
import warnings

from cnnlab import files
from cnnlab.console import aligned
from cnnlab.tuning.study import predecessor

PLOTS = {"optimization_history": "plot_optimization_history", "parallel_coordinate": "plot_parallel_coordinate",
         "param_importances": "plot_param_importances"}  # file stem -> optuna.visualization.matplotlib function


def rows(study):
    """One dict per trial: number, state, value, epochs, seconds, run, reason, the trial it takes up, params."""
    out = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        out.append({"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
                    "epochs": trial.user_attrs.get("epochs"), "seconds": seconds,
                    "run": trial.user_attrs.get("run", ""), "reason": trial.user_attrs.get("reason", ""),
                    "takes_up": "" if predecessor(trial) is None else predecessor(trial),
                    **{f"params_{k}": v for k, v in trial.params.items()}})
    return out


def best_trial(study):
    """The best finished trial, or None before one has finished."""
    from optuna.trial import TrialState

    return study.best_trial if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) \
        else None


def write_results(study, folder, metric, echo=print):
    """Write the study's results into `folder` and echo its table; returns the best trial's experiment path."""
    table = rows(study)
    write_csv(table, folder / "trials.csv")
    echo(format_table(table, metric, study.direction.name == "MAXIMIZE"))
    best = best_trial(study)
    best_path = None
    if best is not None:
        best_path = folder / "best.yaml"
        header = (f"# The best trial ({best.number}) of the study {study.study_name!r}: {metric} {best.value:.6g}.\n"
                  f"# Train it with: cnnlab train {best_path}\n")
        files.write_text(best_path, header + best.user_attrs["experiment"])  # in the study: any machine reads it
        echo(f"Best: trial {best.number}, {metric} {best.value:.6g} ({best.user_attrs.get('run', '')})")
    importances = param_importances(study)
    files.write_json(folder / "importances.json", importances)
    if importances:
        echo("Importances: " + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
    figures = draw_plots(study, folder)
    files.write_text(folder / "report.html", page(study, table, metric, best, importances, figures))
    echo(f"Study: {folder} (trials.csv, report.html{', best.yaml' if best_path else ''})")
    return best_path


def write_csv(table, path):
    params = sorted({k for row in table for k in row if k.startswith("params_")})
    head = ["number", "state", "value", "epochs", "seconds", "run", "reason", "takes_up", *params]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, head, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    files.write_text(path, buffer.getvalue())


def format_table(table, metric, maximize, limit=15):
    """The trials as terminal lines, the finished ones best first, then the rest by number."""
    done = sorted((r for r in table if r["value"] is not None), key=lambda r: r["value"], reverse=maximize)
    others = [r for r in table if r["value"] is None]
    params = sorted({k for row in table for k in row if k.startswith("params_")})
    cells = [["trial", "state", metric, "epochs", *(p.removeprefix("params_") for p in params)]]
    for row in (done + others)[:limit]:
        cells.append([str(row["number"]), row["state"], "" if row["value"] is None else f"{row['value']:.4f}",
                      str(row["epochs"] or ""), *(_cell(row.get(p)) for p in params)])
    counts = {state: sum(r["state"] == state for r in table) for state in ("complete", "pruned", "fail", "running",
                                                                         "waiting")}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    return "\n".join([f"Trials: {len(table)} ({summary})", *aligned(cells)])


def _cell(value):
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def param_importances(study):
    """Optuna's parameter importances (fANOVA), {} until two trials have finished."""
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError):
        return {}


def draw_plots(study, folder):
    """Optuna's matplotlib plots of the study as PNG files in `folder`; {stem: PNG bytes} of those drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as optuna_plots

    drawn = {}
    for stem, name in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = getattr(optuna_plots, name)(study)
        except (ValueError, RuntimeError):  # too few finished trials for this plot
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        drawn[stem] = buffer.getvalue()
        with files.atomic_path(folder / f"{stem}.png") as tmp:
            tmp.write_bytes(drawn[stem])
    return drawn


def page(study, table, metric, best, importances, figures):
    """A self-contained HTML page of the study: best trial, table, importances, plots."""
    heads = ["number", "state", "value", "epochs", "run", "reason"]
    params = sorted({k for row in table for k in row if k.startswith("params_")})
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(k)))}</td>" for k in heads + params) + "</tr>"
                   for row in table)
    header = "".join(f"<th>{html.escape(k.removeprefix('params_'))}</th>" for k in heads + params)
    best_text = (f"trial {best.number}: {metric} {best.value:.6g}, "
                 + ", ".join(f"{k}={_cell(v)}" for k, v in best.params.items())) if best else "none finished yet"
    pictures = "".join(f"<h2>{stem.replace('_', ' ')}</h2><img alt='{stem}' src='data:image/png;base64,"
                       f"{base64.b64encode(png).decode()}'>" for stem, png in figures.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Study {html.escape(study.study_name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>"
            f"<h1>Study {html.escape(study.study_name)}</h1><p>{study.direction.name.lower()} {html.escape(metric)}"
            f"; best: {html.escape(best_text)}</p><h2>trials</h2><table><tr>{header}</tr>{body}</table>"
            f"<h2>importances</h2><pre>{html.escape(json.dumps(importances, indent=1))}</pre>{pictures}"
            "</body></html>")
