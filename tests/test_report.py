"""`cnnlab report` and Grad-CAM: the page's sections, its self-containedness, and a real browser.

The runs are trained once for the module: a tiny ``simple_cnn`` and an ``mlp`` on
12x12 images, whose test labels are partly wrong on purpose so that there are
confident mistakes to show and explain. The browser test drives Debian's chromium
(``make browser`` installs it) through pip's playwright and skips, saying why,
where either is missing.
"""

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cnnlab import rundir
from tests.conftest import error_line, make_images

CHROMIUM = os.environ.get("CNNLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECTIONS = ("config", "environment", "metrics", "per-class", "curves", "measured", "confusion", "mistakes", "gradcam",
            "filters", "feature-maps", "patterns", "layers")
COMPARISON = ("comparison", "validation-curves", "config-diff")


def invoke(*args):
    from cnnlab.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{"cnn": run, "mlp": run}`` trained on a tiny npz whose test labels are one third wrong."""
    root = tmp_path_factory.mktemp("report")
    x, y = make_images(40)
    xt, yt = make_images(10, seed=1)
    yt = np.where(np.arange(len(yt)) % 3 == 0, (yt + 1) % 3, yt)  # mislabelled: sure mistakes
    np.savez(root / "tiny.npz", x_train=x[..., 0], y_train=y, x_test=xt[..., 0], y_test=yt)
    out = {}
    for name, model in (("cnn", {"architecture": "simple_cnn", "dropout": 0.1}),
                        ("mlp", {"architecture": "mlp", "dropout": 0.1})):
        experiment = {"name": name, "seed": 1, "output_dir": str(root / "runs"),
                      "data": {"dataset": "npz", "path": str(root / "tiny.npz"), "validation_split": 0.2,
                               "batch_size": 32},
                      "model": model, "training": {"epochs": 3, "learning_rate": 0.003},
                      "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                                    "reduce_lr_on_plateau": False, "early_stopping": False}}
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(experiment))
        result = invoke("train", path, "--quiet")
        assert result.exit_code == 0, result.output
        out[name] = next((root / "runs" / name).iterdir())
        (out[name] / "metrics.json").unlink()  # train scored the test split; the page computes its own here
    return out


@pytest.fixture(scope="module")
def one_report(runs):
    result = invoke("report", runs["cnn"])
    assert result.exit_code == 0, result.output
    return runs["cnn"] / "report.html"


@pytest.fixture(scope="module")
def two_reports(runs, tmp_path_factory):
    path = tmp_path_factory.mktemp("compare") / "compare.html"
    result = invoke("report", runs["cnn"], runs["mlp"], "-o", path)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"Wrote {path}")
    return path


def sections(page):
    return re.findall(r'data-section="([^"]+)"', page)


def assert_self_contained(page):
    """No reference leaves the page: every src and href is a data URI or an in-page anchor."""
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//|file:)", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    for reference in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert reference.startswith(("data:image/png;base64,", "#")), reference[:80]


# --------------------------------------------------------------------------- the page


@pytest.mark.slow
def test_one_run_has_every_section_and_nothing_external(one_report):
    page = one_report.read_text(encoding="utf-8")
    assert sections(page) == list(SECTIONS)
    assert_self_contained(page)
    # curves, confusion, mistakes, Grad-CAM, filters before/after, feature maps, patterns
    assert page.count('src="data:image/png;base64,') == 7
    assert "Heat-maps over the most confident mistakes" in page and "block1_conv1" in page
    assert "computed for this report" in page  # no metrics.json: scores computed, not read
    assert "tensorflow version" in page and "keras version" in page and "wall time" in page
    assert "<details>" in page  # the config folds away


def test_the_curves_say_why_training_figures_differ_and_the_splits_are_measured_alike(one_report):
    page = one_report.read_text(encoding="utf-8")
    curves = re.search(r'data-section="curves">(.*?)</section>', page, re.S).group(1)
    assert "measured while training" not in curves  # simple_cnn has no dropout (tests/test_visualize.py: reasons)
    measured = re.search(r'data-section="measured">(.*?)</section>', page, re.S).group(1)
    rows = re.findall(r"<tr><td>(.*?)</td>", measured)
    kept = rundir.kept_row(rundir.read_history(one_report.parent), yaml.safe_load(
        (one_report.parent / "config.yaml").read_text()))  # the checkpoint's best val_accuracy
    assert rows == [f"train, as logged during epoch {kept['epoch'] + 1} (the model kept)",
                    "train (30 of 96 images)", "val (24 images)", "test (30 images)"]  # as many as the test split
    layers = re.search(r'data-section="layers">(.*?)</section>', page, re.S).group(1)
    assert "<td>block1_conv1</td>" in layers and "receptive field" in layers


@pytest.mark.slow
def test_two_runs_compare_and_list_the_differing_keys(two_reports, runs):
    page = two_reports.read_text(encoding="utf-8")
    assert sections(page) == list(COMPARISON) + list(SECTIONS) * 2
    assert_self_contained(page)
    diff = page[page.index('data-section="config-diff"'):page.index('data-section="config"')]
    for key in ("model.architecture", "name"):
        assert f"<td>{key}</td>" in diff
    assert "<td>data.path</td>" not in diff  # the same in both
    assert "<td>simple_cnn</td><td>mlp</td>" in diff
    assert "no convolutional layer" in page  # the MLP's Grad-CAM section says why it has none


@pytest.mark.slow
def test_a_bare_keras_file_is_one_error(runs, tmp_path):
    model = tmp_path / "model.keras"
    shutil.copy(runs["cnn"] / "model.keras", model)
    result = invoke("report", model)
    assert result.exit_code == 2
    assert "a report needs a run" in error_line(result)


def test_everything_put_into_the_page_is_escaped(tmp_path):
    from cnnlab.commands.report import RunReport, render

    evil = '<img src=x onerror="alert(1)">'
    metrics = {"accuracy": 0.5, "loss": 1.0, "top_k_accuracy": {}, "images": 2, "split": "test",
               "macro_avg": {"precision": 0.5, "recall": 0.5, "f1": 0.5},
               "per_class": {evil: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}}
    run = tmp_path / "x" / "20260101-000000"
    fake = RunReport(run=run, config={"name": "</pre><script>alert(1)</script>", "model": {"architecture": evil}},
                     info={"kind": evil}, history=[], metrics=metrics, parameters=1,
                     notes={"gradcam": evil})
    page = render([fake])
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_differing_keys_are_dotted_and_ignore_provenance():
    from cnnlab.commands.report import differing_keys, flatten

    a = {"name": "a", "model": {"architecture": "mlp", "dropout": 0.1}, "provenance": {"created": "1"}}
    b = {"name": "b", "model": {"architecture": "mlp", "dropout": 0.2}, "provenance": {"created": "2"},
         "training": {"epochs": 3}}
    assert flatten(b)["model.dropout"] == 0.2
    assert differing_keys([a, b]) == ["model.dropout", "name", "training.epochs"]


def test_confident_mistakes_most_confident_first():
    from cnnlab.tasks.classification import confident_mistakes

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 0, 1])
    assert confident_mistakes(probs, labels, 2) == [3, 1]
    assert confident_mistakes(probs, labels, 10) == [3, 1, 4, 2]


# --------------------------------------------------------------------------- curves


@pytest.fixture
def captured_figures(monkeypatch):
    """The matplotlib figures `cnnlab.visual.plots` saves, kept open for inspection."""
    from cnnlab.visual import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    yield figures
    plots._pyplot().close("all")


def test_curves_have_integer_epochs_a_learning_rate_panel_and_shaded_phases(captured_figures):
    from cnnlab.visual import plots

    history = [{"epoch": e, "loss": 1 / (e + 1), "accuracy": e / 10, "val_loss": 1.1 / (e + 1),
                "val_accuracy": e / 11, "learning_rate": 1e-3 if e < 3 else 1e-5, "phase": 1 if e < 3 else 2}
               for e in range(7)]
    plots.curves(history, io.BytesIO())
    fig = captured_figures[0]
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    for ax in fig.axes:
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if 0.5 <= t <= 7.5]
        assert ticks and all(float(t).is_integer() for t in ticks)
        labels = ax.get_legend_handles_labels()[1]
        assert "phase 1: head" in labels and "phase 2: fine-tuning" in labels
    assert fig.axes[2].get_yscale() == "log"


def test_curves_without_learning_rate_or_phases(captured_figures):
    from cnnlab.visual import plots

    history = [{"epoch": e, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5} for e in range(3)]
    plots.curves(history, io.BytesIO())
    assert len(captured_figures[0].axes) == 2
    plots.curves(history, io.BytesIO(), learning_rates=[0.1, 0.1, 0.01])
    assert captured_figures[1].axes[2].get_title() == "learning rate"


# --------------------------------------------------------------------------- Grad-CAM


def tiny_cnn(padding="valid"):
    import keras

    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, padding=padding, activation="relu", name="conv")(x)  # 10 x 10 x 4 (valid)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))


def test_gradcam_heatmap_has_the_conv_layers_shape_and_is_normalised():
    import keras

    from cnnlab.visual.gradcam import GradCam, overlay

    keras.utils.set_random_seed(0)
    model = tiny_cnn()
    images = np.random.default_rng(0).uniform(0, 255, (5, 12, 12, 1)).astype("float32")
    before = model.predict_on_batch(images)
    cam = GradCam(model)
    assert cam.layer.name == "conv"
    maps = cam.heatmaps(images)
    assert maps.shape == (5, 10, 10)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    for heat in maps:
        assert heat.max() == pytest.approx(1.0) or heat.max() == 0
    assert model.get_layer("predictions").activation is keras.activations.softmax  # the shared model untouched
    np.testing.assert_allclose(model.predict_on_batch(images), before, rtol=1e-6)
    picture = overlay(images[0], maps[0])
    assert picture.dtype == np.uint8 and picture.shape == (96, 96, 3)


def test_gradcam_under_mixed_precision_is_float32_and_finite():
    import keras

    from cnnlab.visual.gradcam import GradCam

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = tiny_cnn()
    finally:
        keras.config.set_dtype_policy("float32")
    maps = GradCam(model).heatmaps(np.random.default_rng(2).uniform(0, 255, (3, 12, 12, 1)))
    assert maps.dtype == np.float32 and maps.shape == (3, 10, 10) and np.isfinite(maps).all()


def test_gradcam_scores_the_logits_without_touching_the_softmax():
    """keras-io removes the last softmax to score logits; here they are computed beside it: the
    logits' softmax is the model's output, and the model still ends in its softmax."""
    import keras

    from cnnlab.visual.gradcam import GradCam

    model = tiny_cnn()
    images = np.random.default_rng(1).uniform(0, 255, (3, 12, 12, 1)).astype("float32")
    cam = GradCam(model)
    _, head = cam._model(images)
    logits = keras.ops.convert_to_numpy(cam._to_logits(head))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)),
                               model.predict_on_batch(images), rtol=1e-5, atol=1e-6)
    assert model.get_layer("predictions").activation is keras.activations.softmax


def test_gradcam_of_a_dense_network_says_there_is_no_convolutional_layer():
    import keras

    from cnnlab.errors import CnnlabError
    from cnnlab.visual.gradcam import NO_CONV, GradCam

    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)  # 4-D, but no convolution
    x = keras.layers.Dense(8)(keras.layers.Flatten()(x))
    cam = GradCam(keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)))
    assert not cam.available and cam.layer is None
    with pytest.raises(CnnlabError, match="no convolutional layer"):
        cam.heatmaps(np.zeros((1, 12, 12, 1)))
    assert NO_CONV.startswith("no convolutional layer")


def test_gradcam_explains_a_nested_base_by_its_output():
    """A keras.applications-style base is one layer of the classifier: its output is the feature map."""
    import keras

    from cnnlab.visual.gradcam import GradCam

    inner = keras.Input((16, 16, 3))
    feature = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inner)
    base = keras.Model(inner, keras.layers.MaxPooling2D()(feature), name="base")  # 8 x 8 x 6
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dropout(0.2)(x)))
    cam = GradCam(model)
    assert cam.layer.name == "base"
    assert cam.heatmaps(np.ones((2, 16, 16, 3)) * 100).shape == (2, 8, 8)


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.75, 0.25]])
def test_gradcam_of_a_saved_ensemble_averages_its_members_maps_with_its_weights(weights, tmp_path):
    """Not "no convolutional layer (a dense network)": each member's own map for the ensemble's class,
    resized to the finest (12 x 12), weighted as the ensemble weights it (Average, or Rescaling + Add)."""
    import keras
    import tensorflow as tf

    from cnnlab.commands.ensemble import combine
    from cnnlab.visual.gradcam import GradCam, grad_cam

    keras.utils.set_random_seed(0)
    members = [tiny_cnn(), tiny_cnn(padding="same")]  # 10 x 10 and 12 x 12 feature maps
    combine(members, weights, (12, 12, 1)).save(tmp_path / "ensemble.keras")
    model = keras.saving.load_model(tmp_path / "ensemble.keras")
    images = np.random.default_rng(3).uniform(0, 255, (5, 12, 12, 1)).astype("float32")
    cam = grad_cam(model)
    assert cam.available and cam.layer_name == "member_0/conv, member_1/conv" and cam.note == ""
    assert f"(member_0 weight {weights[0]:.3f}: conv; member_1 weight {weights[1]:.3f}: conv)" in cam.description
    maps = cam.heatmaps(images)  # for the ensemble's own predictions
    classes = model.predict_on_batch(images).argmax(axis=1)
    own = [GradCam(member).heatmaps(images, classes) for member in members]
    mixed = weights[0] * tf.image.resize(own[0][..., None], (12, 12))[..., 0].numpy() + weights[1] * own[1]
    expected = mixed / np.maximum(mixed.max(axis=(1, 2), keepdims=True), 1e-12)
    assert maps.shape == (5, 12, 12) and maps.max() == pytest.approx(1.0)
    np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_gradcam_of_an_ensemble_of_ensembles_looks_into_the_inner_members(tmp_path):
    import keras

    from cnnlab.commands.ensemble import combine
    from cnnlab.visual.gradcam import grad_cam

    keras.utils.set_random_seed(1)
    inner = combine([tiny_cnn(), tiny_cnn(padding="same")], [0.5, 0.5], (12, 12, 1))
    combine([inner, tiny_cnn()], [0.25, 0.75], (12, 12, 1)).save(tmp_path / "nested.keras")
    cam = grad_cam(keras.saving.load_model(tmp_path / "nested.keras"))
    assert cam.layer_names == ["member_0/member_0/conv", "member_0/member_1/conv", "member_1/conv"]
    maps = cam.heatmaps(np.random.default_rng(4).uniform(0, 255, (2, 12, 12, 1)))
    assert maps.shape == (2, 12, 12) and np.isfinite(maps).all() and maps.max() == pytest.approx(1.0)


def test_an_ensembles_page_lists_its_members_instead_of_epochs_and_wall_time(tmp_path):
    """A saved ensemble trained no epochs: no "epochs 0" nor "wall time 0 s", but each member's own."""
    from cnnlab.commands.report import RunReport, render

    metrics = {"accuracy": 0.9, "loss": 0.3, "top_k_accuracy": {}, "images": 2, "split": "test", "per_class": {}}
    members = [{"name": "member_0", "run": "runs/a/1", "weight": 0.25, "found": True, "epochs": 3,
                "wall_seconds": 65.0},
               {"name": "member_1", "run": "runs/b/2", "weight": 0.75, "found": False, "epochs": None,
                "wall_seconds": None}]
    stamp = "2026-01-01T00:00:00"
    fake = RunReport(run=tmp_path / "ensemble" / "1", config={"name": "ensemble", "provenance": {"created": stamp}},
                     info={"kind": "ensemble", "updated": stamp}, history=[], metrics=metrics, parameters=10,
                     members=members)
    page = render([fake])
    assert "<td>epochs</td>" not in page and "<td>wall time</td>" not in page and "0 s" not in page
    assert "<td>members</td><td>2</td>" in page
    assert "<td>member_0</td><td>runs/a/1: weight 0.250, 3 epochs, wall time 1 min 05 s</td>" in page
    assert "<td>member_1</td><td>runs/b/2: weight 0.750 (the run folder is gone)</td>" in page
    trained = RunReport(run=tmp_path / "tiny" / "2", config={"name": "tiny", "provenance": {"created": stamp}},
                        info={"kind": "train", "seconds": 7}, history=[{"epoch": 0, "val_accuracy": 0.5}],
                        metrics=metrics, parameters=10)
    comparison = render([fake, trained])
    rows = re.findall(r"<tr><td>(ensemble/1|tiny/2)</td>(.*?)</tr>", comparison)
    cells = {label: re.findall(r"<td[^>]*>([^<]*)</td>", rest) for label, rest in rows}
    assert cells["ensemble/1"][3:6] == ["-", "10", "-"]  # epochs, parameters, wall time
    assert cells["tiny/2"][3:6] == ["1", "10", "7 s"]


# --------------------------------------------------------------------------- in a real browser


def browser_or_skip():
    """Playwright's sync API, or a skip saying what is missing and how to get it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install 'cnnlab[report]'")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no browser at {CHROMIUM}: `make browser` installs Debian's chromium (as root)")
    return sync_playwright


@pytest.mark.slow
@pytest.mark.parametrize("which", ["one", "two"])
def test_report_in_a_real_browser(which, request, tmp_path):
    from PIL import Image

    sync_playwright = browser_or_skip()
    page_path = request.getfixturevalue("one_report" if which == "one" else "two_reports")
    expected = SECTIONS if which == "one" else COMPARISON + SECTIONS
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            for key in expected:
                assert page.locator(f'[data-section="{key}"]').first.is_visible(), key
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.locator("details summary").first.click()
            assert page.locator("details pre").first.is_visible()  # the config unfolds
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert [u for u in requests if not u.startswith(("data:", "file:"))] == []
    assert requests[0].startswith("file:") and all(u.startswith("data:") for u in requests[1:])
    picture = Image.open(io.BytesIO(shot)).convert("RGB")
    assert picture.height > 2000  # the whole page, not one screen
    assert len(set(picture.getdata())) > 1000  # plots and heat-maps drew: not a blank page
    picture.save(tmp_path / "screenshot.png")
