"""`cnnlab serve`: the page's answer for each task (top classes and Grad-CAM, a mask over the image, labels
above their thresholds), uploads read as predict reads files, the drawing pad, the port and the extra; the
app's API under two requests at once, and the page in a real browser served by ``cnnlab serve`` in a fresh
process.

The runs are trained once for the module, through the CLI: a ``simple_cnn`` on scikit-learn's digits at
28 x 28 x 1 (MNIST's shape, so the page has a drawing pad), a tiny U-Net and a multi-label CNN on the
canvases of the segmentation and multi-label tests.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import dotted_experiment, error_line, trained_run
from tests.test_report import CHROMIUM, CHROMIUM_FLAGS, browser_or_skip

DIGITS = {"name": "digits", "seed": 1,
          "data": {"dataset": "digits", "image_size": [28, 28], "validation_split": 0.2, "batch_size": 32},
          "model": {"architecture": "simple_cnn"}, "training": {"epochs": 3, "learning_rate": 0.003},
          "callbacks": {"model_checkpoint": {"monitor": "val_accuracy", "mode": "max"},
                        "reduce_lr_on_plateau": False, "early_stopping": False}}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A simple CNN on scikit-learn's digits upscaled to 28 x 28 x 1 (bright digits on black, as MNIST)."""
    folder = tmp_path_factory.mktemp("serve-digits")
    return trained_run(folder, dotted_experiment(folder, DIGITS, {}))[0]


@pytest.fixture(scope="module")
def served(digits_run):
    from cnnlab.commands.serve import open_served

    return open_served(digits_run)


@pytest.fixture(scope="module")
def digit_png(served, tmp_path_factory):
    """``(path, class)``: an 8 x 8 digit as a PNG file, one the model answers right and sure."""
    from sklearn.datasets import load_digits

    from cnnlab.commands.serve import answer

    digits = load_digits()
    folder = tmp_path_factory.mktemp("digit")
    for index in np.flatnonzero(digits.target == 7)[:20]:
        path = folder / f"seven_{index}.png"
        Image.fromarray((digits.images[index] * 255 / 16).astype(np.uint8)).save(path)
        scores = answer(served, path).scores
        if max(scores, key=scores.get) == "7" and scores["7"] > 0.9:
            return path, "7"
    pytest.fail("the digits model answers none of 20 sevens right: it did not train")


# --------------------------------------------------------------------------- each task's answer


def test_a_classifier_answers_its_top_classes_and_where_it_looked(served, digit_png):
    from cnnlab.commands.serve import TOP_K, answer

    path, truth = digit_png
    result = answer(served, path)
    assert list(result.scores)[0] == truth and len(result.scores) == TOP_K
    assert list(result.scores.values()) == sorted(result.scores.values(), reverse=True)
    assert result.text.startswith(f"**{truth}**") and "Grad-CAM, layer block1_conv1" in result.text
    assert result.picture.dtype == np.uint8 and result.picture.shape == (112, 112, 3)  # 28 x 4: drawn smoothly
    assert len(np.unique(result.picture.reshape(-1, 3), axis=0)) > 50  # a heat-map, not a flat picture
    same = answer(served, np.asarray(Image.open(path)))  # pixels answer as the file does
    assert same.scores == pytest.approx(result.scores, abs=1e-4)  # grey pixels skip rgb_to_grayscale's rounding


def test_a_dense_model_answers_without_a_heat_map_and_a_bare_model_names_classes_by_index(tmp_path):
    import keras

    from cnnlab.commands.serve import answer, open_served

    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "dense.keras")
    served = open_served(tmp_path / "dense.keras")
    result = answer(served, np.full((40, 30, 3), 128, np.uint8))
    assert set(result.scores) == {"0", "1", "2"} and result.picture is None
    assert "No heat-map: no convolutional layer" in result.text


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory):
    from tests.test_segmentation import BASE, NAMES, canvases

    folder = tmp_path_factory.mktemp("serve-seg")
    x, y = canvases(48, np.random.default_rng(0))
    np.savez(folder / "squares.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8], class_names=np.array(NAMES))
    path = dotted_experiment(folder, BASE, {"data.dataset": "npz", "data.path": str(folder / "squares.npz"),
                                            "training.epochs": 1})
    return trained_run(folder, path)[0]


def test_a_segmentation_run_answers_a_mask_over_the_image_at_its_own_size(segmentation_run, tmp_path):
    from cnnlab.commands.serve import answer, open_served
    from tests.test_segmentation import NAMES, canvases

    served = open_served(segmentation_run)
    image = canvases(1, np.random.default_rng(5))[0][0]
    path = tmp_path / "canvas.png"
    Image.fromarray(image).resize((48, 32), Image.NEAREST).save(path)  # twice the model's 24 x 16
    result = answer(served, path)
    assert result.picture.shape == (32, 48, 3) and result.picture.dtype == np.uint8
    assert set(result.scores) <= set(NAMES) and sum(result.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.text.startswith("Classes on the image:") and "Mean confidence" in result.text


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    from tests.test_multilabel import BASE, canvases

    folder = tmp_path_factory.mktemp("serve-ml")
    x, y = canvases(160, np.random.default_rng(0))
    np.savez(folder / "canvases.npz", x_train=x, y_train=y, x_test=x[:16], y_test=y[:16],
             class_names=np.array(["zero", "one", "two", "three"]))
    path = dotted_experiment(folder, BASE, {"data.dataset": "npz", "data.path": str(folder / "canvases.npz"),
                                            "model.architecture": "simple_cnn", "training.epochs": 2})
    return trained_run(folder, path)[0]


def test_a_multilabel_run_answers_the_labels_at_their_saved_thresholds(multilabel_run):
    import json

    from cnnlab.commands.serve import answer, open_served
    from tests.test_multilabel import canvases

    served = open_served(multilabel_run)
    thresholds = json.loads((multilabel_run / "thresholds.json").read_text())
    assert served.calibration == thresholds
    images = canvases(6, np.random.default_rng(3))[0]
    for image in images:
        result = answer(served, image)
        assert list(result.scores) == ["zero", "one", "two", "three"] and result.picture is None
        above = [name for (name, p), t in zip(result.scores.items(), thresholds) if p >= t]
        if above:
            assert result.text.startswith("Labels: ") and all(f"**{name}**" in result.text for name in above)
        else:
            assert result.text == "No label reaches its threshold."


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("content, reason", [(b"\x89PNG\r\n\x1a\n not really", "unreadable image"),
                                             (b"", "empty file (0 bytes)")])
def test_a_bad_upload_is_a_message_naming_the_file_not_a_failure(served, tmp_path, content, reason):
    from cnnlab.commands.serve import on_image

    cached = tmp_path / "cache" / "0123abcd"  # where Gradio keeps an upload
    cached.mkdir(parents=True)
    (cached / "holiday.png").write_bytes(content)
    with pytest.warns(UserWarning, match="Cannot answer holiday.png"):  # gr.Warning, outside a page
        text, picture, scores = on_image(served, {"path": str(cached / "holiday.png"), "orig_name": "holiday.png"})
    assert text.startswith("**Cannot answer holiday.png**:") and reason in text
    assert str(cached) not in text and picture is None and scores is None


def test_a_truncated_image_and_a_text_file_say_why_as_predict_does(served, digit_png, tmp_path):
    from cnnlab.commands.serve import answer
    from cnnlab.errors import DataError

    truncated = tmp_path / "cut.png"
    truncated.write_bytes(digit_png[0].read_bytes()[:60])
    with pytest.raises(DataError, match="truncated"):
        answer(served, truncated)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(DataError, match=r"not an image file \(allowed: jpg, jpeg, png, bmp, gif\)"):
        answer(served, notes)


def stroke(background, ink):
    """A 280 x 280 RGBA pad with a vertical bar of `ink` (RGBA) on `background` (RGBA)."""
    pad = np.zeros((280, 280, 4), np.uint8) + np.uint8(background)
    pad[40:240, 120:160] = ink
    return pad


@pytest.mark.parametrize("background, ink", [((0, 0, 0, 0), (255, 255, 255, 255)),  # white on transparent
                                             ((0, 0, 0, 0), (0, 0, 0, 255)),  # black on transparent
                                             ((255, 255, 255, 255), (0, 0, 0, 255))])  # black on white
def test_a_drawing_becomes_a_bright_stroke_on_black_centred_as_mnist(background, ink):
    from cnnlab.inference.inputs import drawn_image

    image = drawn_image(stroke(background, ink), (28, 28, 1))
    assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() == 255
    rows, cols = np.nonzero(image > 127)
    assert (rows.min(), rows.max() + 1) == (4, 24)  # 200 pixels tall -> MNIST's 20-pixel box, centred
    assert 12 <= cols.min() and cols.max() <= 15  # 40 wide -> 4, in the middle
    assert image[:4].max() == 0 and image[:, :10].max() == 0  # the paper is black


def test_a_drawing_gets_a_class_once_and_an_empty_pad_a_message(served):
    from cnnlab.commands.serve import answer_drawing, on_drawing
    from cnnlab.errors import DataError

    drawing, memory, unchanged = {"composite": stroke((0, 0, 0, 0), (0, 0, 0, 255))}, {}, ({"__type__": "update"},) * 3
    text, picture, scores = on_drawing(served, drawing, memory, "visitor")
    assert text.startswith("**") and len(scores) == 5 and picture is not None
    assert on_drawing(served, drawing, memory, "visitor") == unchanged  # sent again as the page changes elsewhere
    assert on_drawing(served, drawing, memory, "another")[0] == text  # another visitor's first drawing
    assert on_drawing(served, {"composite": np.zeros((280, 280, 4), np.uint8)}, memory, "visitor") == unchanged
    with pytest.raises(DataError, match="^the drawing pad is empty: draw something on it first.$"):
        answer_drawing(served, np.zeros((280, 280, 4), np.uint8))


def test_the_page_has_a_drawing_pad_only_for_small_grayscale_runs(served, tmp_path):
    import keras

    from cnnlab.commands.serve import build_app, open_served

    app = build_app(served)
    assert [fn.api_name for fn in app.fns.values()] == ["answer_image", "answer_drawing"]
    assert all(fn.concurrency_id == "model" for fn in app.fns.values())  # one queue to the model
    inputs = keras.Input((28, 28, 3))  # colour images: no pad
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))).save(
        tmp_path / "rgb.keras")
    app = build_app(open_served(tmp_path / "rgb.keras"))
    assert [fn.api_name for fn in app.fns.values()] == ["answer_image"]


# --------------------------------------------------------------------------- the command


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_port_in_use_is_one_error_line_suggesting_another(digits_run, cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", digits_run, "--port", port)
    assert result.exit_code == 2
    assert error_line(result) == (f"Error: port {port} on 127.0.0.1 is already in use (another program, or another "
                                  f"cnnlab serve): pass --port with a free one, e.g. --port {port + 1}.")


def test_a_host_that_is_no_address_is_one_error_line(digits_run, cli):
    result = cli("serve", digits_run, "--host", "no-such-host.invalid", "--port", free_port())
    assert result.exit_code == 2 and "--host 'no-such-host.invalid' is no address of this machine" in error_line(result)


def test_without_gradio_serve_names_the_extra(digits_run, cli, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a))
    result = cli("serve", digits_run)
    assert result.exit_code == 2
    assert error_line(result) == ("Error: cnnlab serve needs gradio, which is not installed: "
                                  "pip install 'cnnlab[serve]'.")


def test_two_requests_at_once_both_answer_through_the_api(served, digit_png):
    from gradio_client import Client, handle_file

    from cnnlab.commands.serve import build_app, launch

    app, port = build_app(served), free_port()
    launch(app, "127.0.0.1", port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        jobs = [client.submit(handle_file(str(digit_png[0])), api_name="/answer_image") for _ in range(2)]
        answers = [job.result(timeout=60) for job in jobs]
    finally:
        app.close(verbose=False)
    for text, picture, scores in answers:
        assert text.startswith(f"**{digit_png[1]}**") and scores["label"] == digit_png[1]
        assert Path(picture).is_file()


# --------------------------------------------------------------------------- a real browser, a fresh process


@pytest.fixture
def serving(digits_run, tmp_path):
    """``cnnlab serve RUN --port P`` in a fresh process, as a user starts it: ``(url, process)`` once it says it
    serves; stopped with Ctrl-C (SIGINT) after the test, which checks it exits with 0 saying so."""
    port = free_port()
    log = open(tmp_path / "serve.err", "w")
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(digits_run), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=log, text=True, cwd=tmp_path,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               # Ctrl-C's SIGINT at its default, as a shell starts it (an xdist worker ignores it,
                               # and a child inherits an ignored signal)
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 180
    while not any(line.startswith("Serving ") for line in lines):
        assert process.poll() is None and time.time() < deadline, (tmp_path / "serve.err").read_text()[-2000:]
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/", process, lines
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    reader.join(timeout=10)
    log.close()
    assert lines[-1] == "Stopped.\n", lines


def wait_for_text(page, selector, wanted, timeout=30):
    """The text of `selector` once ``wanted(text)`` (fails, showing the text, after `timeout` s)."""
    locator = page.locator(selector)
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = locator.inner_text()
        if wanted(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"{selector} still says {locator.inner_text()!r}")


def draw_a_stroke(page):
    """Pick the pad's brush and draw a vertical stroke with the mouse."""
    pad = page.locator("#drawing-input")
    pad.get_by_role("button", name="Brush").first.click()
    box = pad.locator("canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x, y + box["height"] * 0.6 * step / 20)
    page.mouse.up()


@pytest.mark.slow
def test_the_page_in_a_real_browser_answers_uploads_and_drawings(serving, digits_run, digit_png, tmp_path):
    sync_playwright = browser_or_skip()
    url, process, lines = serving
    assert lines[-1] == f"Serving {digits_run} at {url.rstrip('/')} (Ctrl-C stops)\n"
    errors, outside = [], []
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
            page.goto(url, wait_until="load")  # not "networkidle": a page with state keeps a heartbeat open
            page.locator("#image-input input[type=file]").wait_for(state="attached")
            page.locator("#image-input input[type=file]").set_input_files(str(digit_png[0]))
            uploaded = wait_for_text(page, "#answer-text", lambda t: t.startswith(f"{digit_png[1]} ("))
            assert page.locator("#answer-scores").inner_text().split()[2] == digit_png[1]  # label, top class, ...
            assert page.locator("#answer-picture img").count() == 1  # the Grad-CAM picture
            draw_a_stroke(page)
            answered = re.compile(r"^\d+ \(\d+\.\d%\)\. Heat-map for \d+: ")  # not "0.1s ...": still at work
            drawn = wait_for_text(page, "#answer-text", lambda t: t != uploaded and answered.match(t))
            assert drawn.split()[0] in [str(d) for d in range(10)]
            page.locator("#image-input input[type=file]").set_input_files(str(bad))
            message = wait_for_text(page, "#answer-text", lambda t: t.startswith("Cannot answer broken.png: "))
            assert "unreadable image" in message and str(tmp_path) not in message and "/gradio/" not in message
            page.wait_for_timeout(1500)  # the pad sends its drawing again as the page changes: answered already
            assert page.locator("#answer-text").inner_text() == message
            assert page.get_by_text("Cannot answer broken.png").count() >= 2  # the text and the warning toast
        finally:
            browser.close()
    assert errors == [] and outside == []
    assert process.poll() is None  # still serving after a bad file
