"""`serve`: a local web page for a run's model: drop, upload or draw an image and see the model's answer.

The page (Gradio) shows what the run's task means: a classifier's top classes and
a Grad-CAM heat-map of where it looked (`cnnlab.visual.gradcam`), a segmentation
network's mask over the image and each class's share of the pixels, a multi-label
classifier's labels above their thresholds (chosen on validation and saved with the
run) beside every label's probability. A run on small grayscale images (MNIST's
28 x 28 x 1) also gets a drawing pad: the drawing becomes a bright stroke on black,
centred as MNIST's digits are (`cnnlab.inference.inputs.drawn_image`).

An uploaded file is read as ``cnnlab predict`` reads files (same checks, same decode,
same fit to the model's input; scaling is inside the model), and a bad one is a
message on the page, not an error page. Requests wait in one queue: one image at a
time reaches the model. The page binds to 127.0.0.1 unless told otherwise, makes no
share link, sends no analytics and loads nothing from the internet (system fonts).
Ctrl-C stops it; the command then exits with 0.

Importing this module imports neither TensorFlow nor Gradio.
"""

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cnnlab.errors import CnnlabError, DataError
from cnnlab.registry import Registry

TOP_K = 5  # classes a classifier's answer lists
DRAWABLE_SIDE = 64  # a grayscale run up to this image side gets a drawing pad
PAD_SIZE = (280, 280)  # the drawing pad's canvas, pixels
PAD_BRUSH = 12  # the pad's brush radius: MNIST-thick strokes once the drawing shrinks to 28 pixels
MAX_UPLOAD = "25mb"
FONTS = ("ui-sans-serif", "system-ui", "sans-serif")  # the system's own: nothing fetched from the internet
MONO_FONTS = ("ui-monospace", "Consolas", "monospace")
# small pictures (MNIST's 28 pixels) fill their box, their pixels sharp
CSS = "#image-input img, #answer-picture img {width: 100%; height: 100%; object-fit: contain; " \
      "image-rendering: pixelated;}"
API_NAMES = ("answer_image", "answer_drawing")  # the page's API (gradio_client: api_name="/answer_image")
REMEMBERED = 1000  # visitors whose last drawing the server remembers

VIEWS = Registry("task")  # task name -> how the page shows its answer


@dataclass(frozen=True)
class Answer:
    """The model's answer for one image, as the page shows it.

    Attributes:
        text: Markdown: what the answer says in words (labels, notes).
        scores: ``{name: value 0..1}`` for the page's bars (top classes, pixel shares, probabilities).
        picture: ``(H, W, 3)`` uint8 to show (a heat-map or a mask over the image), or None.
    """

    text: str
    scores: dict
    picture: Optional[np.ndarray] = None


@dataclass
class Served:
    """A run opened for serving: its model, what it takes and what it answers.

    Attributes:
        name: the run folder or model file, as the page and the command line name it.
        model: the Keras model.
        shape: ``(H, W, C)`` the model takes.
        class_names: its classes' names.
        task: the run's `cnnlab.tasks.Task`.
        calibration: what the task chose on validation (multi-label thresholds), or None.
    """

    name: str
    model: object
    shape: tuple
    class_names: list
    task: object
    calibration: object = None

    @property
    def view(self):
        """The registry entry of the task's page: its answer function and its labels (``meta``)."""
        return VIEWS.get(self.task.name)

    @property
    def drawable(self):
        """Whether the page offers a drawing pad: grayscale images no larger than `DRAWABLE_SIDE`."""
        return self.shape[-1] == 1 and max(self.shape[:2]) <= DRAWABLE_SIDE

    @functools.cached_property
    def explainer(self):
        """The model's Grad-CAM (`cnnlab.visual.gradcam.grad_cam`), made at its first use."""
        from cnnlab.visual.gradcam import grad_cam

        return grad_cam(self.model)


def serve(target=None, *, host="127.0.0.1", port=7860, unsafe=False, root="runs", echo=print, announce=None):
    """Serve a page for the model of `target` on ``http://host:port`` until Ctrl-C.

    Args:
        target: what `cnnlab.rundir.open_target` accepts (None: the latest run under `root`).
        host: the address to listen on (127.0.0.1: this machine only).
        port: the port; one in use is a `CnnlabError` suggesting ``--port``.
        unsafe: load a model with Lambda layers (Keras ``safe_mode=False``).
        root: where the latest run is looked for.
        echo: a print-like function for the lines the command prints.
        announce: a print-like function for the page's address (default `echo`; the CLI's prints even when
            quiet: the address is the command's result).
    """
    check_port(host, port)
    served = open_served(target, unsafe=unsafe, root=root, echo=echo)
    answer(served, np.zeros(served.shape, np.uint8))  # traces the model (and Grad-CAM) before the first visitor
    app = build_app(served)
    launch(app, host, port)
    (announce or echo)(f"Serving {served.name} at http://{url_host(host)}:{port} (Ctrl-C stops)")
    wait(app, echo)


def open_served(target=None, *, unsafe=False, root="runs", echo=None):
    """Open `target`'s model for serving (`Served`); `echo` is told which run (None: nothing)."""
    from cnnlab.inference.inputs import class_names_of, input_shape
    from cnnlab.rundir import open_target
    from cnnlab.tasks import task_of

    opened = open_target(target, root, note=echo)
    task = task_of(opened.config())
    model = opened.load_model(unsafe)
    VIEWS.get(task.name)  # a task without a page fails now, naming the tasks that have one
    return Served(str(opened.run if opened.run is not None else opened.model_path), model,
                  input_shape(model, opened.model_path, verb="serve"), class_names_of(opened, model), task,
                  task.calibrate(opened.folder))


# --------------------------------------------------------------------------- answering one image


def answer(served, image):
    """The model's `Answer` for one image.

    Args:
        served: `Served`.
        image: a file's path (read as ``cnnlab predict`` reads files) or pixels ``(H, W[, 1 | 3])`` 0..255.

    Raises:
        DataError: a file that is no readable image, saying why.
    """
    from cnnlab.inference.inputs import fit_image, read_image
    from cnnlab.inference.predictions import predict_batch

    picture = read_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
    x = fit_image(picture, served.shape)
    outputs = served.task.condense(predict_batch(served.model, x[None]))
    result = served.task.predictions(["image"], {0: outputs[0]}, {}, served.class_names, served.calibration,
                                     top_k=min(TOP_K, len(served.class_names)), all_probs=True)
    return served.view.fn(served, result.rows[0], picture, x)


def answer_drawing(served, drawing):
    """The model's `Answer` for a drawing (a pad's picture, strokes in any colour on transparent or on white),
    turned into the model's kind of image first (`cnnlab.inference.inputs.drawn_image`); an empty pad raises
    `DataError`."""
    from cnnlab.inference.inputs import drawn_image

    image = drawn_image(drawing, served.shape)
    if image is None:
        raise DataError("the drawing pad is empty: draw something on it first.")
    return answer(served, image)


@VIEWS.register("classification", scores="Top classes", picture="Grad-CAM: where the model looked", heading=True)
def classification_answer(served, row, picture, x):
    """The top classes, and the Grad-CAM heat-map of the first over the image the model saw."""
    from cnnlab.visual.gradcam import overlay

    scores = {served.class_names[c]: p for c, p in row.top}
    best, probability = served.class_names[row.top[0][0]], row.top[0][1]
    cam = served.explainer
    if not cam.available:
        return Answer(f"**{best}** ({probability:.1%}). No heat-map: {cam.unavailable}.", scores)
    heat = cam.heatmaps(x[None], [row.top[0][0]])[0]
    where = cam.description[:1].lower() + cam.description[1:]
    note = f" {cam.note}" if cam.note else ""
    return Answer(f"**{best}** ({probability:.1%}). Heat-map for {best}: Grad-CAM, {where}.{note}", scores,
                  overlay(x, heat))


@VIEWS.register("segmentation", scores="Share of the pixels", picture="Predicted mask over the image")
def segmentation_answer(served, row, picture, x):
    """The mask over the image (at the image's own size), each class's share of the pixels."""
    from cnnlab.tasks.segmentation import mask_overlay

    shown = picture if picture.ndim == 3 else picture[..., None]
    shown = np.repeat(shown, 3, axis=-1) if shown.shape[-1] == 1 else shown
    _, coloured = mask_overlay(np.asarray(shown, np.uint8), row.mask)
    shares = {name: share for name, share in zip(served.class_names, row.shares) if share > 0}
    present = ", ".join(f"{name} {share:.1%}" for name, share in sorted(shares.items(), key=lambda s: -s[1]))
    return Answer(f"Classes on the image: {present}. Mean confidence {row.confidence:.3f}.", shares, coloured)


@VIEWS.register("multilabel", scores="Every label's probability", picture=None)
def multilabel_answer(served, row, picture, x):
    """The labels at or above their thresholds, and every label's probability."""
    from cnnlab.tasks.multilabel import thresholds_of

    thresholds = thresholds_of(served.calibration, len(served.class_names))
    chosen = ", ".join(f"**{served.class_names[c]}** ({p:.1%}, threshold {thresholds[c]:.2f})" for c, p in row.labels)
    scores = dict(zip(served.class_names, row.probabilities))
    return Answer(f"Labels: {chosen}." if chosen else "No label reaches its threshold.", scores)


# --------------------------------------------------------------------------- the page


def import_gradio():
    """Gradio, imported with its analytics off (they would call the internet at start)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio

    return gradio


def build_app(served):
    """The page of `served` as a Gradio ``Blocks``, its queue set (one image at a time), not launched.

    Its API: ``/answer_image`` (an image file) and, for a drawable run, ``/answer_drawing`` (a pad's
    value); each gives ``(text, picture, scores)``.
    """
    gr = import_gradio()
    with gr.Blocks(title=f"cnnlab: {Path(served.name).name}", analytics_enabled=False) as app:
        gr.Markdown(f"## {served.name}\n{intro(served)}")
        with gr.Row():
            with gr.Column():
                upload = gr.Image(label="Image (drop, upload or paste)", type="filepath", height=PAD_SIZE[0],
                                  sources=["upload", "clipboard"], buttons=["fullscreen"], elem_id="image-input")
                pad = drawing_pad(gr) if served.drawable else None
            with gr.Column():
                outputs = output_components(gr, served)
        # as uploaded (no preprocessing): a bad file is read, and judged, as predict judges files
        upload.upload(functools.partial(on_image, served), inputs=upload, outputs=outputs, api_name=API_NAMES[0],
                      preprocess=False, **QUEUED)
        if pad is not None:
            pad.change(drawing_handler(gr, served), inputs=pad, outputs=outputs, api_name=API_NAMES[1], **QUEUED)
    return app.queue(default_concurrency_limit=1)


# every input waits for the model in one queue; of the values sent while one is answered, the last is kept
QUEUED = {"concurrency_id": "model", "trigger_mode": "always_last", "show_progress": "minimal"}


def intro(served):
    """The line under the page's title: the task, the image size, the classes."""
    h, w, c = served.shape
    names = ", ".join(served.class_names[:12]) + (", ..." if len(served.class_names) > 12 else "")
    how = "Drop or upload an image" + (", or draw on the pad" if served.drawable else "")
    return (f"{served.task.name}, images of {h} x {w} x {c}; classes: {names}. "
            f"{how}: it is brought to the model's size and colour mode as `cnnlab predict` does.")


def drawing_pad(gr):
    """A pad to draw on with the mouse: black ink, MNIST-thick once shrunk, on a transparent canvas."""
    brush = gr.Brush(default_size=PAD_BRUSH, colors=["#000000"], color_mode="fixed")
    return gr.Sketchpad(label="Draw", type="numpy", image_mode="RGBA", canvas_size=PAD_SIZE, brush=brush,
                        layers=False, transforms=(), buttons=["fullscreen"],
                        placeholder="Pick the brush (left), then draw", elem_id="drawing-input")


def output_components(gr, served):
    """``[text, picture, scores]``: the answer in words, its picture (hidden for a task without), its bars."""
    meta = served.view.meta
    text = gr.Markdown(elem_id="answer-text")
    picture = gr.Image(label=meta["picture"], type="numpy", interactive=False, height=PAD_SIZE[0],
                       buttons=["download", "fullscreen"], visible=meta["picture"] is not None,
                       elem_id="answer-picture")
    scores = gr.Label(label=meta["scores"], num_top_classes=len(served.class_names), elem_id="answer-scores",
                      show_heading=meta.get("heading", False))  # a multi-label's likeliest is no answer alone
    return [text, picture, scores]


def on_image(served, payload):
    """The page's answer for an upload (Gradio's file payload, or a path): ``(text, picture, scores)``; a bad
    file's reason is the text, naming the file as the user did."""
    path = payload["path"] if isinstance(payload, dict) else os.fspath(payload)
    name = (payload.get("orig_name") if isinstance(payload, dict) else None) or Path(path).name
    return respond(lambda: answer(served, path), name, hide=(path, name))


def drawing_handler(gr, served):
    """`on_drawing` for the page: each visitor's last drawing remembered here, on the server, where the queue
    reads it in turn (a value kept in the page would be read when an event is sent, possibly stale)."""
    memory = {}

    def handler(drawing, request: gr.Request):
        return on_drawing(served, drawing, memory, request.session_hash)

    return handler


def on_drawing(served, drawing, memory=None, session=None):
    """The page's answer for the pad: ``(text, picture, scores)``.

    The pad sends its drawing again when the page changes elsewhere (an upload): the drawing last
    answered for `session` (in `memory`, a dict), or a cleared pad, changes nothing (``gr.skip()``), so
    that it does not replace the upload's answer.
    """
    import hashlib

    from cnnlab.inference.inputs import drawn_image

    memory = {} if memory is None else memory
    composite = drawing.get("composite") if drawing else None
    key = hashlib.sha1(np.ascontiguousarray(composite).tobytes()).hexdigest() if composite is not None else None
    image = drawn_image(composite, served.shape) if key is not None and key != memory.get(session) else None
    if image is None:
        skip = import_gradio().skip()
        return skip, skip, skip
    memory.pop(session, None)  # the latest last: the oldest visitors are forgotten first
    memory[session] = key
    while len(memory) > REMEMBERED:
        memory.pop(next(iter(memory)))
    return respond(lambda: answer(served, image), "the drawing")


def respond(compute, name, hide=None):
    """``(text, picture, scores)`` of `compute`'s `Answer`; a `DataError` becomes a warning and the text
    (`hide`: ``(old, new)``, the upload's path in the server's cache, said as the file's own name)."""
    try:
        result = compute()
    except DataError as exc:
        reason = str(exc).replace(*hide) if hide else str(exc)
        import_gradio().Warning(f"Cannot answer {name}: {reason}")
        return f"**Cannot answer {name}**: {reason}", None, None
    return result.text, result.picture, result.scores


# --------------------------------------------------------------------------- the server


def url_host(host):
    """`host` as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def check_port(host, port):
    """A `CnnlabError` naming the port unless this process can listen on `host`:`port`."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CnnlabError(f"--host {host!r} is no address of this machine ({exc.strerror}): give 127.0.0.1 (this "
                          "machine only), 0.0.0.0 (every network interface) or one of its addresses.") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                other = port + 1 if port < 65535 else 8080
                raise CnnlabError(f"port {port} on {host} is already in use (another program, or another cnnlab "
                                  f"serve): pass --port with a free one, e.g. --port {other}.") from None
            raise CnnlabError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Pass another --host or "
                              "--port (ports under 1024 need privileges).") from None


def launch(app, host, port):
    """Start `app`'s server on `host`:`port` without blocking: no share link, no browser, system fonts."""
    gr = import_gradio()
    theme = gr.themes.Default(font=FONTS, font_mono=MONO_FONTS)
    try:
        app.launch(server_name=host, server_port=port, share=False, inbrowser=False, quiet=True,
                   prevent_thread_lock=True, ssr_mode=False, theme=theme, css=CSS, footer_links=["api", "settings"],
                   run_history=False, max_file_size=MAX_UPLOAD, mcp_server=False)
    except OSError:  # taken between `check_port` and now
        raise CnnlabError(f"port {port} on {host} is already in use: pass --port with a free one.") from None


def wait(app, echo):
    """Block until Ctrl-C (or SIGTERM), then close the server and say so."""
    import signal
    import threading
    import time

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the page as Ctrl-C does
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        echo("Stopped.")
    finally:
        app.close(verbose=False)
