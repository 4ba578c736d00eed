"""`report`: one self-contained HTML page about a run, or a comparison of several.

Every image is a PNG in a ``data:`` URI and the CSS is inline, so the page opens
anywhere, offline, and can be mailed as one file. A run's page holds its resolved
config, environment, metrics, per-class scores, training curves, confusion matrix,
its most confident mistakes and Grad-CAM heat-maps over some of them. Several runs
add a comparison table, their validation curves overlaid and the config keys that
differ. Everything put into the page is escaped.
"""

import base64
import datetime
import html
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

from cnnlab import __version__, files, rundir
from cnnlab.errors import CnnlabError
from cnnlab.rundir import open_target
from cnnlab.tasks import TASKS, task_of

RUN_SECTIONS = ("config", "environment", "metrics", "per-class", "curves", "measured", "confusion", "mistakes",
                "gradcam", "filters", "feature-maps", "patterns", "layers")
TRAIN_SAMPLE = 10_000  # at most this many training images are measured as the test split is
PATTERN_SIDE = 64  # the report climbs filter patterns for images up to this side (cnnlab visualize: any)
COMPARISON_SECTIONS = ("comparison", "validation-curves", "config-diff")


@dataclass
class RunReport:
    """What the page says about one run (gathered by `gather`)."""

    run: Path
    config: dict  # config.yaml as saved, provenance included
    info: dict  # run.json
    history: list
    metrics: dict
    parameters: int
    figures: dict = field(default_factory=dict)  # section -> PNG bytes
    tables: dict = field(default_factory=dict)  # section -> (headers, rows)
    notes: dict = field(default_factory=dict)  # section -> a sentence shown instead of / beside a figure
    members: list = field(default_factory=list)  # an ensemble's members (`member_summaries`)

    @property
    def label(self):
        """``<name>/<timestamp>``: short, and unique among runs."""
        return "/".join(self.run.parts[-2:])

    @property
    def is_ensemble(self):
        """A saved ensemble (``cnnlab ensemble --save``): trained by no one, so it has no epochs nor wall time."""
        return self.info.get("kind") == "ensemble"

    @property
    def epochs(self):
        return None if self.is_ensemble else len(self.history)

    @property
    def wall_seconds(self):
        return None if self.is_ensemble else wall_time(self.info, self.config.get("provenance", {}))


def report(targets=(), *, output=None, root="runs", unsafe=False, echo=print):
    """Write the HTML report of one run (default: the latest) or the comparison of several.

    Args:
        targets: run folders (or anything `open_target` accepts); empty for the latest run.
        output: the HTML file; default ``<run>/report.html`` for one run, ``./report.html`` for several.
        unsafe: load models with Lambda layers (Keras ``safe_mode=False``).
        echo: a print-like function for progress lines.

    Returns:
        The path of the page written.
    """
    started = time.perf_counter()
    opened = [open_target(t, root, note=echo) for t in (targets or [None])]
    for target in opened:
        if target.run is None:
            raise CnnlabError(f"{str(target.model_path)!r} is not inside a run folder: a report needs a run "
                              "(its config, history and data). Name a run folder made by cnnlab train.")
    opened = list({(t.run.resolve(), t.model_path.resolve()): t for t in opened}.values())  # each once
    path = Path(output) if output else (opened[0].run / "report.html" if len(opened) == 1 else Path("report.html"))
    if path.is_dir():
        raise CnnlabError(f"-o {str(path)!r} is a folder: give the HTML file to write, e.g. {path / 'report.html'}.")
    files.check_writable_file(path, "the report", "Give -o an .html file in a folder you can write to.")
    reports = [gather(target, unsafe=unsafe, echo=echo) for target in opened]
    files.write_text(path, render(reports))
    echo(f"Report made in {time.perf_counter() - started:.1f} s")
    return path


# --------------------------------------------------------------------------- gathering one run


def gather(opened, *, unsafe=False, echo=print):
    """Everything the page shows about the run of `opened`: its files, its model on its split, the figures."""
    from cnnlab.config import read_yaml
    from cnnlab.data.pipeline import load_data
    from cnnlab.inference.inputs import check_model_fits
    from cnnlab.inference.predictions import predict_split  # the checks evaluate makes
    from cnnlab.session import setup
    from cnnlab.visual import plots

    run = opened.run
    cfg = opened.config()
    setup(cfg)
    model = opened.load_model(unsafe)
    data = load_data(cfg)
    check_model_fits(model, data, run)
    split = cfg.evaluate.split
    echo(f"{run}: predicting its {split} split ({len(data.split(split))} images)")
    outputs, targets, _ = predict_split(model, data, split)
    info = rundir.run_info(run)
    out = RunReport(run=run, config=read_yaml(run / rundir.CONFIG_FILE), info=info,
                    history=rundir.read_history(run), metrics=run_metrics(run, outputs, targets, data, cfg),
                    parameters=int(model.count_params()), members=member_summaries(info))
    if out.history:
        rates = learning_rates(out.history, cfg, data.steps_per_epoch(cfg.training.steps_per_epoch))
        out.figures["curves"] = plots.png(plots.curves, out.history, learning_rates=rates)
    if not out.is_ensemble:
        measured_alike(out, model, cfg, data, {split: (outputs, targets, len(targets))}, echo)
    task_of(cfg).report(out, model, cfg, data, split, outputs, targets, echo)
    inside_sections(out, model, data, split, echo)
    return out


def measured_alike(page, model, cfg, data, known, echo):
    """The "measured" section: the final model scored on train, validation and test alike, beside the kept
    epoch's logged training figures; and, on the curves, what made those logged figures differ.

    `known`: ``{split: (outputs, targets)}`` predicted already.
    """
    from cnnlab.training.fit import monitored
    from cnnlab.training.regime import differences

    task, rows, keys = task_of(cfg), [], None
    calibration = task.calibrate(page.run)
    for split in ("train", "val", "test"):
        if getattr(data, split) is None:
            continue
        outputs, targets, size = known[split] if split in known else _measured(model, data, split, cfg, echo)
        figures = {k: v for k, v in task.headline(task.scores(outputs, targets, data.class_names, cfg,
                                                              calibration)).items() if isinstance(v, float)}
        keys = keys or list(figures)
        total = len(data.split(split))
        rows.append((f"{split} ({size:,}{f' of {total:,}' if size < total else ''} images)",
                     *(num(figures.get(k)) for k in keys)))
    logged = rundir.kept_row(page.history, page.config) or {}
    if any(monitored(k, model) in logged for k in keys):
        epoch = logged.get("epoch")
        rows.insert(0, (f"train, as logged during epoch {epoch + 1 if isinstance(epoch, int) else '?'} "
                        "(the model kept)", *(num(logged.get(monitored(k, model))) for k in keys)))
    page.tables["measured"] = (("measured on", *keys), rows)
    page.notes["measured"] = ("The final model on each split, without dropout or augmentation, as the test split "
                              "is measured" + ("; the thresholds were chosen on the validation split, which flatters "
                                               "its row" if calibration else "") + ".")
    reasons = differences(model, cfg)
    if reasons:
        page.notes["curves"] = ("The training curves are measured while training, so they are not the model's "
                                f"figures on those images: {'; '.join(reasons)}. See the table below.")


def _measured(model, data, split, cfg, echo):
    """``(outputs, targets, images measured)`` of `split`: at most as many images as the evaluated split holds
    (and `TRAIN_SAMPLE`), spread evenly over it (a folder dataset lists its classes in turn)."""
    from dataclasses import replace

    import numpy as np

    from cnnlab.inference.predictions import predict_split

    examples = data.split(split)
    evaluated = getattr(data, cfg.evaluate.split)
    most = min(TRAIN_SAMPLE, len(evaluated) if evaluated is not None else TRAIN_SAMPLE)
    if len(examples) > most:
        data = replace(data, **{split: examples.take(np.unique(np.linspace(0, len(examples) - 1, most).astype(int)))})
    size = len(data.split(split))
    echo(f"measuring the {split} split as the test split is ({size} images)")
    return (*predict_split(model, data, split)[:2], size)


def inside_sections(page, model, data, split, echo):
    """The first layer's filters, one image's feature maps, the filter patterns and the layer table.

    Gradient ascent at a large image size takes minutes: above `PATTERN_SIDE` pixels the report shows the
    patterns `cnnlab visualize` drew, if it did, rather than climbing them again.
    """
    from cnnlab.inference.predictions import images_at
    from cnnlab.models.anatomy import CHANGES_FIELD, TABLE_COLUMNS, layer_table, table_cells
    from cnnlab.visual.inside import Insight

    large = max(data.input_shape[:2]) > PATTERN_SIDE
    inside = Insight.of(model, images_at(data, split, [0]), run=page.run, steps=0 if large else None)
    pictures = inside.pictures()
    drawn = page.run / "visualize" / "patterns.png"
    if large and drawn.is_file():
        pictures["patterns.png"] = drawn.read_bytes()
    for key, name in (("filters", "filters.png"), ("feature-maps", "feature_maps_1.png"),
                      ("patterns", "patterns.png")):
        if name in pictures:
            page.figures[key] = pictures[name]
    page.notes["filters"] = " ".join(n for n in inside.notes if "training started" in n) or None
    if "patterns.png" not in pictures:
        page.notes["patterns"] = (" ".join(n for n in inside.notes if "training started" not in n) or
                                  f"Gradient ascent on {data.input_shape[0]}x{data.input_shape[1]} images takes "
                                  "minutes: `cnnlab visualize` draws the patterns, and the report shows them then.")
    rows = layer_table(model)
    page.tables["layers"] = (TABLE_COLUMNS, [table_cells(r) for r in rows if r.kind in CHANGES_FIELD])
    page.notes["layers"] = (f"The {sum(r.kind in CHANGES_FIELD for r in rows)} of {len(rows)} layers that change "
                            "what one output unit sees: its receptive field (input pixels, height x width where they "
                            "differ) and jump (input pixels between neighbouring units). `cnnlab visualize` writes "
                            "every layer.")
    echo(f"{page.run}: drew its filters, feature maps and filter patterns")


def member_summaries(info):
    """An ensemble run's members (run.json's ``members`` and ``weights``): run, weight, epochs, wall time.

    A member that is an ensemble itself has no epochs nor wall time (None); a member
    folder that is gone is marked ``found: False``.
    """
    from cnnlab.config import read_yaml

    out = []
    for number, (member, weight) in enumerate(zip(info.get("members", []), info.get("weights", []))):
        path = Path(member)
        summary = {"name": f"member_{number}", "run": member, "weight": weight, "found": rundir.is_run(path),
                   "epochs": None, "wall_seconds": None}
        if summary["found"] and rundir.run_info(path).get("kind") != "ensemble":
            try:
                provenance = read_yaml(path / rundir.CONFIG_FILE).get("provenance", {}) or {}
            except CnnlabError:
                provenance = {}
            summary.update(epochs=len(rundir.read_history(path)),
                           wall_seconds=wall_time(rundir.run_info(path), provenance))
        out.append(summary)
    return out


def run_metrics(run, outputs, targets, data, cfg):
    """The run's metrics.json (what `cnnlab evaluate` wrote), or the same scores computed now."""
    saved = files.read_json(Path(run) / rundir.METRICS_FILE)
    if saved and saved.get("class_names", data.class_names) == list(data.class_names):
        return saved
    result = task_of(cfg).scores(outputs, targets, data.class_names, cfg)
    result.update(split=cfg.evaluate.split, computed_by="report")
    return result


def learning_rates(history, cfg, steps_per_epoch):
    """The learning rate of each epoch: history.csv's own column, else what the config sets.

    Without ``reduce_lr_on_plateau`` Keras logs no rate; the config then says it
    exactly: ``training.learning_rate`` and its schedule at the epoch's first step
    (fine-tuning's phase 1 spans ``finetune.head_epochs``), and phase 2's constant
    ``finetune.learning_rate``.
    """
    from cnnlab.training.optimizers import build_learning_rate

    if all(isinstance(row.get("learning_rate"), float) for row in history):
        return [row["learning_rate"] for row in history]
    phase_one = cfg.finetune.head_epochs if any(row.get("phase") == 1 for row in history) else None
    schedule = build_learning_rate(cfg.training, steps_per_epoch, phase_one)
    rates = []
    for row in history:
        if row.get("phase") == 2:
            rates.append(float(cfg.finetune.learning_rate))
        else:
            rates.append(float(schedule(row["epoch"] * steps_per_epoch)) if callable(schedule) else float(schedule))
    return rates


def wall_time(info, provenance):
    """Seconds from the run's creation (config.yaml's provenance) to run.json's last update, or None."""
    if isinstance(info.get("seconds"), (int, float)):
        return float(info["seconds"])
    try:
        start = datetime.datetime.fromisoformat(str(provenance["created"]))
        end = datetime.datetime.fromisoformat(str(info["updated"]))
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def flatten(config, prefix=""):
    """``{"training.learning_rate": 0.001, ...}`` from a nested config dict."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differing_keys(configs):
    """The dotted config keys whose values differ between runs (provenance aside), sorted."""
    flat = [flatten({k: v for k, v in c.items() if k != "provenance"}) for c in configs]
    keys = sorted(set().union(*flat))
    missing = object()
    return [key for key in keys if len({repr(f.get(key, missing)) for f in flat}) > 1]


# --------------------------------------------------------------------------- the page


def render(reports):
    """The whole HTML page for one run or several."""
    template = Template(resources.files("cnnlab").joinpath("templates/report.html").read_text(encoding="utf-8"))
    many = len(reports) > 1
    body, nav = [], []
    if many:
        body.append(comparison_sections(reports))
        nav += [("comparison", "Comparison"), ("validation-curves", "Validation curves"),
                ("config-diff", "Config differences")]
    for number, run_report in enumerate(reports, 1):
        prefix = f"run{number}-" if many else ""
        body.append(run_sections(run_report, prefix, heading=many))
        nav.append((f"{prefix}metrics", run_report.label) if many else None)
    if not many:
        nav = [(key, TITLES[key]) for key in RUN_SECTIONS]
    title = (f"cnnlab report: {len(reports)} runs compared" if many else f"cnnlab report: {reports[0].label}")
    subtitle = " · ".join(str(r.run) for r in reports)
    return template.substitute(
        title=esc(title), subtitle=esc(subtitle), version=esc(__version__),
        generated=esc(datetime.datetime.now().isoformat(timespec="seconds")),
        nav="".join(f'<a href="#{esc(anchor)}">{esc(text)}</a>' for anchor, text in filter(None, nav)),
        body="\n".join(body))


TITLES = {"config": "Configuration", "environment": "Environment", "metrics": "Metrics",
          "per-class": "Per-class scores", "curves": "Training curves", "confusion": "Confusion matrix",
          "mistakes": "Most confident mistakes", "gradcam": "Grad-CAM", "measured": "Train, validation and test, "
          "measured alike", "filters": "First-layer filters", "feature-maps": "Feature maps",
          "patterns": "Filter patterns", "layers": "Layers and receptive fields"}


def esc(value):
    return html.escape(str(value), quote=True)


def section(key, title, body, anchor=None, level=3):
    """One ``<section>`` with its heading; ``data-section`` names it for tests and styling."""
    return (f'<section id="{esc(anchor or key)}" data-section="{esc(key)}">\n'
            f"<h{level}>{esc(title)}</h{level}>\n{body}\n</section>")


def table(headers, rows, numeric=(), total=None):
    """An HTML table (`headers` None: a key/value table); columns in `numeric` right-aligned; `total` in bold."""
    def cells(row, tag):
        return "".join(f'<{tag}{" class=num" if i in numeric else ""}>{esc(v)}</{tag}>' for i, v in enumerate(row))

    lines = ([f"<tr>{cells(headers, 'th')}</tr>"] if headers else []) + [f"<tr>{cells(r, 'td')}</tr>" for r in rows]
    if total:
        lines.append(f'<tr class="total">{cells(total, "td")}</tr>')
    return "<table>\n" + "\n".join(lines) + "\n</table>"


def image(png, alt):
    """An ``<img>`` holding `png` as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def figure_or_note(run_report, key, alt):
    parts = []
    if key in run_report.tables:
        headers, rows = run_report.tables[key]
        parts.append(f'<div class="scroll">{table(headers, rows, numeric=tuple(range(1, len(headers))))}</div>')
    if key in run_report.figures:
        parts.append(image(run_report.figures[key], alt))
    if run_report.notes.get(key):
        parts.append(f'<p class="note">{esc(run_report.notes[key])}</p>')
    return "\n".join(parts) or '<p class="note">Nothing recorded.</p>'


def run_sections(r, prefix="", heading=False):
    """Every section about one run, in an ``<article>``."""
    def sec(key, body):
        return section(key, TITLES[key], body, anchor=prefix + key, level=3 if heading else 2)

    parts = [f'<article class="{"run" if heading else "single"}" data-run="{esc(r.label)}">']
    if heading:
        parts.append(f"<h2>{esc(r.label)}</h2>")
    parts += [sec("config", config_html(r.config)), sec("environment", environment_html(r)),
              sec("metrics", metrics_html(r.metrics, TASKS.get(r.config.get("task") or "classification").fn)),
              sec("per-class", per_class_html(r.metrics)),
              sec("curves", figure_or_note(r, "curves", "training curves")),
              sec("measured", figure_or_note(r, "measured", "")),
              sec("confusion", figure_or_note(r, "confusion", "confusion matrix")),
              sec("mistakes", figure_or_note(r, "mistakes", "most confident mistakes")),
              sec("gradcam", figure_or_note(r, "gradcam", "Grad-CAM heat-maps")),
              sec("filters", figure_or_note(r, "filters", "the first layer's filters before and after training")),
              sec("feature-maps", figure_or_note(r, "feature-maps", "feature maps of each block")),
              sec("patterns", figure_or_note(r, "patterns", "filter patterns by gradient ascent")),
              sec("layers", figure_or_note(r, "layers", ""))]
    parts.append("</article>")
    return "\n".join(parts)


def config_html(config):
    """The resolved config as YAML, folded away."""
    import yaml

    text = yaml.safe_dump({k: v for k, v in config.items() if k != "provenance"}, sort_keys=False)
    return f"<details><summary>config.yaml (resolved, {len(text.splitlines())} lines)</summary>" \
           f"<pre>{esc(text)}</pre></details>"


def environment_html(r):
    """Versions and git commit (from provenance), device, status, epochs, parameters and wall time."""
    from cnnlab.session import device

    provenance = r.config.get("provenance", {}) or {}
    rows = [("run", str(r.run)), ("status", rundir.status(r.run)), ("kind", r.info.get("kind", "?"))]
    if r.info.get("base"):
        rows.append(("base", r.info["base"]))
    rows += [(f"{name} version", version) for name, version in (provenance.get("versions") or {}).items()]
    rows += [("git commit", provenance.get("git_commit") or "not recorded"),
             ("device", r.info.get("device") or f"not recorded by the run; this report ran on {device()}"),
             ("created", provenance.get("created", "?")), ("last update", r.info.get("updated", "?"))]
    if r.is_ensemble:  # trained by its members: their epochs and wall times, not the ensemble's own
        rows += [("members", len(r.members)), *((m["name"], member_text(m)) for m in r.members),
                 ("parameters", f"{r.parameters:,}")]
    else:
        rows += [("epochs", r.epochs), ("parameters", f"{r.parameters:,}"), ("wall time", duration(r.wall_seconds))]
    return table(None, rows)


def member_text(member):
    """``runs/a/2024...: weight 0.500, 12 epochs, wall time 3 min 02 s`` (see `member_summaries`)."""
    if not member["found"]:
        return f"{member['run']}: weight {member['weight']:.3f} (the run folder is gone)"
    if member["epochs"] is None:
        return f"{member['run']}: weight {member['weight']:.3f}, an ensemble itself"
    return (f"{member['run']}: weight {member['weight']:.3f}, {member['epochs']} epochs, "
            f"wall time {duration(member['wall_seconds'])}")


def duration(seconds):
    if seconds is None:
        return "not recorded"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else (f"{minutes} min {secs:02d} s" if minutes else f"{secs} s")


def metrics_html(metrics, task):
    """Headline numbers as cards, the run's task's (`cnnlab.tasks.base.Task.cards`)."""
    formats = {"percent": pct, "number": num, "count": lambda v: "?" if v is None else v}
    body = "".join(f'<div class="card"><div class="value">{esc(formats[kind](v))}</div>'
                   f'<div class="name">{esc(k)}</div></div>' for k, v, kind in task.cards(metrics))
    source = ("computed for this report (no metrics.json: run cnnlab evaluate to keep them)"
              if metrics.get("computed_by") == "report" else "from metrics.json")
    return (f'<div class="cards">{body}</div>\n<p class="note">The {esc(metrics.get("split", "?"))} split, '
            f"{esc(source)}.</p>")


COLUMN_NAMES = {"f1": "F1", "iou": "IoU", "dice": "Dice", "average_precision": "AP", "predicted_pixels": "predicted"}


def per_class_html(metrics):
    """The per-class scores of any task: one column per score metrics.json holds for each class (and the
    macro average, where the task gives one)."""
    per_class = metrics.get("per_class", {})
    if not per_class:
        return '<p class="note">No per-class scores.</p>'
    keys = list(next(iter(per_class.values())))

    def cell(value):
        return value if isinstance(value, int) else num(value)

    rows = [(name, *(cell(s.get(k)) for k in keys)) for name, s in per_class.items()]
    macro = metrics.get("macro_avg")
    total = None
    if macro:
        total = ("macro avg", *(cell(macro.get(k)) if k in macro else sum(s.get(k, 0) for s in per_class.values())
                                for k in keys))
    headers = ("class", *(COLUMN_NAMES.get(k, k) for k in keys))
    return (f'<div class="scroll">{table(headers, rows, numeric=tuple(range(1, len(headers))), total=total)}'
            "</div>")


def pct(value):
    return "-" if value is None else f"{100 * value:.2f} %"


def num(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def comparison_sections(reports):
    """The comparison table, the overlaid validation curves and the config keys that differ."""
    from cnnlab.visual import plots

    rows = [(r.label, pct(r.metrics.get("accuracy")), num(r.metrics.get("loss")),
             num(best(r.history, "val_accuracy", max)), num(r.epochs, 0), f"{r.parameters:,}",
             "-" if r.is_ensemble else duration(r.wall_seconds),
             r.config.get("model", {}).get("architecture", "?")) for r in reports]
    headers = ("run", "accuracy", "loss", "best val_accuracy", "epochs", "parameters", "wall time", "architecture")
    curves = plots.png(plots.compare_curves, {r.label: r.history for r in reports})
    keys = differing_keys([r.config for r in reports])
    flat = [flatten(r.config) for r in reports]
    diff_rows = [(key, *(show(f.get(key, "(absent)")) for f in flat)) for key in keys]
    diff = (table(("key", *(r.label for r in reports)), diff_rows) if keys
            else '<p class="note">The runs have the same config.</p>')
    return "\n".join([
        "<h2>Comparison</h2>",
        section("comparison", "Runs", table(headers, rows, numeric=(1, 2, 3, 4, 5))),
        seed_groups_section([r.run for r in reports]),
        section("validation-curves", "Validation curves", image(curves, "validation curves of every run")),
        section("config-diff", f"Config keys that differ ({len(keys)})", diff)])


def seed_groups_section(runs):
    """A table of the runs that differ only in seed: each test metric's mean ± spread (empty if none)."""
    groups = rundir.seed_groups(runs)
    if not groups:
        return ""
    rows = [(g["group"], len(g["seeds"]), *(rundir.mean_std(g, c) for c in ("test_accuracy", "test_loss")),
             num(g["min"]["test_accuracy"]), num(g["max"]["test_accuracy"])) for g in groups]
    headers = ("seed group", "seeds", "test accuracy", "test loss", "lowest accuracy", "highest accuracy")
    note = f'<p class="note">{esc(rundir.SPREAD)}.</p>'
    return section("seed-groups", "Seed groups", table(headers, rows, numeric=(1, 2, 3, 4, 5)) + note)


def best(history, key, pick):
    values = [row[key] for row in history if isinstance(row.get(key), float)]
    return pick(values) if values else None


def show(value):
    """A config value as YAML would write it inline."""
    import yaml

    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
