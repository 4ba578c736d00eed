"""What `cnnlab doctor` found, written down: a terminal summary, ``doctor.csv`` (one row per finding),
``doctor.html`` (self-contained: thumbnails per issue, each suspect with its given and suggested
label) and ``exclude.txt`` (the training and validation images to leave out: likely label errors
and copies of test images; ``data.exclude`` reads it)."""

import base64
import csv
import html
import io
from dataclasses import dataclass, field

import numpy as np

from cnnlab import files
from cnnlab.console import aligned

THUMBNAILS = 40  # per section of the page
THUMB_SIDE = 72  # pixels: small images are scaled up (nearest neighbour) to be seen
EXCLUDE_FILE = "exclude.txt"
EXCLUDED_SPLITS = ("train", "val")  # the test split is what a run is judged on: never left out by the list


@dataclass(frozen=True)
class Finding:
    """One problem of one image: its issue, where it is, a score (lower: worse) and what to say of it."""

    issue: str
    split: str
    index: int
    id: str
    score: float | None = None
    given: str = ""
    suggested: str = ""
    detail: str = ""
    position: int | None = None  # in `cnnlab.health.images.SplitImages`, for its thumbnail
    exclude: bool = False  # listed in exclude.txt


@dataclass
class Report:
    """Every finding, the class counts per split, and notes (what was not checked, and why)."""

    findings: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # split -> {class name: images}
    notes: list = field(default_factory=list)
    images: object = None  # the `cnnlab.health.images.SplitImages` the findings' positions point into
    folder: object = None  # where the report was written

    def of(self, issue):
        return [f for f in self.findings if f.issue == issue]

    def excluded(self):
        return sorted({f.id for f in self.findings if f.exclude})


def image_findings(found, images, class_names, task):
    """`Finding`s of cleanvision's `found` (`cnnlab.health.images.ImageFindings`)."""
    out = []
    for issue, hits in found.flagged.items():
        if issue.endswith("duplicates"):
            continue  # the sets say more than the flags
        for position, score in hits:
            item = images.items[position]
            out.append(Finding(issue, item.split, item.index, item.id, score, task.label_text(item.label, class_names),
                               position=position))
    for kind, sets in found.duplicate_sets.items():
        leaks = {id(group) for group in found.leaks[kind]}
        for number, group in enumerate(sets):
            splits = sorted({images.items[p].split for p in group})
            leak = id(group) in leaks
            issue = f"leakage ({kind.split('_')[0]})" if leak else kind.removesuffix("s")
            for position in group:
                item = images.items[position]
                out.append(Finding(issue, item.split, item.index, item.id, None,
                                   task.label_text(item.label, class_names),
                                   detail=f"set {number}: {len(group)} images in {', '.join(splits)}",
                                   position=position,
                                   exclude=leak and kind == "exact_duplicates" and item.split in EXCLUDED_SPLITS))
    return out


def label_findings(split, issues, examples, images, class_names, task):
    """`Finding`s of the likely label errors `issues` (`cnnlab.tasks.base.Task.label_issues`) of `split`."""
    return [Finding("label", split, index, str(examples.ids[index]), quality,
                    task.label_text(examples.labels[index], class_names), task.label_text(suggested, class_names),
                    position=images.position(split, index), exclude=split in EXCLUDED_SPLITS)
            for index, quality, suggested in issues]


def unreadable_findings(skipped):
    return [Finding("unreadable", "", -1, str(path), detail=str(reason)) for path, reason in skipped]


def class_counts(bundle):
    """``{split: {class name: images}}``: class indices counted, multi-hot rows summed; masks are not counted."""
    counts = {}
    for split in ("train", "val", "test"):
        examples = getattr(bundle, split)
        if examples is None or examples.paths is not None and np.asarray(examples.labels).dtype.kind in "US":
            continue  # labels that are files (masks)
        labels = np.asarray(examples.labels)
        if labels.ndim > 2:
            continue
        per_class = labels.sum(axis=0) if labels.ndim == 2 else np.bincount(labels.astype(int),
                                                                            minlength=bundle.classes)
        counts[split] = {str(name): int(n) for name, n in zip(bundle.class_names, per_class)}
    return counts


def summary(report):
    """The terminal summary: each issue's count, the class balance, the notes, the exclusion list's size."""
    issues = {}
    for finding in report.findings:
        issues[finding.issue] = issues.get(finding.issue, 0) + 1
    lines = ["Issues:" if issues else "Issues: none found"]
    lines += aligned([["issue", "images"], *([name, str(n)] for name, n in sorted(issues.items()))])[1:] \
        if issues else []
    lines = [lines[0], *(f"  {line}" for line in lines[1:])]
    for split, counts in report.counts.items():
        values = [n for n in counts.values() if n]
        ratio = max(values) / min(values) if values else float("nan")
        lines.append(f"Classes ({split}): {len(counts)}, {min(counts.values())} to {max(counts.values())} images "
                     f"per class (imbalance {ratio:.1f}x)")
    lines += [f"Note: {note}" for note in report.notes]
    suspects = report.of("label")
    for finding in suspects[:5]:
        lines.append(f"  label? {finding.id}: given {finding.given}, suggested {finding.suggested} "
                     f"(quality {finding.score:.3f})")
    return "\n".join(lines)


def write_report(report, folder, images, title):
    """``doctor.csv``, ``doctor.html`` and ``exclude.txt`` into `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["issue", "split", "index", "id", "score", "given", "suggested", "detail", "excluded"])
    for f in report.findings:
        writer.writerow([f.issue, f.split, f.index, f.id, "" if f.score is None else f"{f.score:.6g}", f.given,
                         f.suggested, f.detail, int(f.exclude)])
    files.write_text(folder / "doctor.csv", buffer.getvalue())
    excluded = report.excluded()
    files.write_text(folder / EXCLUDE_FILE, "# cnnlab doctor: training and validation images to leave out "
                     "(data.exclude: this file): likely label errors and copies of test images\n"
                     + "".join(f"{name}\n" for name in excluded))
    files.write_text(folder / "doctor.html", page(report, images, title))
    return folder / "doctor.csv", folder / "doctor.html", folder / EXCLUDE_FILE


def page(report, images, title):
    """A self-contained HTML page: the summary, then per issue a grid of thumbnails with captions."""
    sections = []
    for issue in dict.fromkeys(f.issue for f in report.findings):
        shown = report.of(issue)
        tiles = "".join(_tile(f, images) for f in shown[:THUMBNAILS])
        more = f"<p>and {len(shown) - THUMBNAILS} more (doctor.csv lists them all)</p>" if len(shown) > THUMBNAILS \
            else ""
        sections.append(f"<h2>{html.escape(issue)} ({len(shown)})</h2><div class='grid'>{tiles}</div>{more}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;margin:2em}.grid{display:flex;flex-wrap:wrap;gap:8px}"
            ".tile{width:150px;font-size:11px}.tile img{image-rendering:pixelated;width:72px;height:72px;"
            "object-fit:contain;background:#eee}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><pre>{html.escape(summary(report))}</pre>{''.join(sections)}"
            "</body></html>")


def _tile(finding, images):
    picture = ""
    if finding.position is not None:
        try:
            picture = f"<img alt='' src='data:image/png;base64,{_thumbnail(images.image(finding.position))}'>"
        except OSError:
            picture = "(unreadable)"
    words = [f"{finding.split}:{finding.index}" if finding.split else finding.id]
    if finding.given:
        words.append(f"given {finding.given}" + (f" → {finding.suggested}" if finding.suggested else ""))
    if finding.score is not None:
        words.append(f"score {finding.score:.3f}")
    if finding.detail:
        words.append(finding.detail)
    caption = "<br>".join(html.escape(w) for w in words)
    return f"<div class='tile' title='{html.escape(finding.id)}'>{picture}<br>{caption}</div>"


def _thumbnail(image):
    from PIL import Image

    image = image.copy()
    if max(image.size) < THUMB_SIDE:
        scale = THUMB_SIDE // max(image.size)
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.thumbnail((THUMB_SIDE * 2, THUMB_SIDE * 2))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
