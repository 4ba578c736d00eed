"""A corpus of bad inputs, each through the CLI in-process: exit code 2, one ``Error:`` line, no
traceback, and an earlier run left exactly as it was.

Most cases need no TensorFlow work at all (`cnnlab check` rejects them when the config
loads); the data cases read a tiny .npz or image folder; none trains. Resume, finetune
``--freeze``, evaluate without runs or on a truncated model, unwritable output folders and
a full disk are covered with the commands that own them.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import TINY_EXPERIMENT, error_line, make_images

BASE = TINY_EXPERIMENT
DROP = object()  # a value that removes the key


def merged(base, changes):
    """`base` with `changes` merged in, section by section (DROP removes a key)."""
    out = dict(base)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


class Workspace:
    """Files for one case, all under `root`; runs go to ``root / "runs"``."""

    def __init__(self, root):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def write(self, content, name="bad.yaml"):
        path = self.root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
        return path

    def config(self, changes=None, name="bad.yaml"):
        data = merged({**BASE, "output_dir": str(self.runs)}, changes or {})
        return self.write(yaml.safe_dump(data, sort_keys=False), name)

    def npz(self, **arrays):
        path = self.root / "data.npz"
        np.savez(path, **arrays)
        return path

    def folder(self, layout):
        """An image folder from ``{"class/file.png": bytes or None (a good PNG)}``."""
        root = self.root / "images"
        root.mkdir(exist_ok=True)
        for relative, content in layout.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(good_png() if content is None else content)
        return root


def good_png(size=12, seed=0):
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(make_images(1, classes=1, size=size, seed=seed)[0][0][..., 0]).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(width=30000, height=30000):
    """A tiny PNG whose header claims 900 megapixels (Pillow refuses it as a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


# --------------------------------------------------------------------------- the corpus
# Each case: (id, build(workspace) -> CLI arguments, a fragment the Error line must hold or None).


def text(content, command="check"):
    return lambda ws: [command, ws.write(content)]


def config(changes, command="check"):
    return lambda ws: [*command.split(), ws.config(changes)]


def overrides(*items):
    return lambda ws: ["check", ws.config(), *[a for item in items for a in ("--set", item)]]


def npz(**arrays):
    return lambda ws: ["check", ws.config({"data": {"dataset": "npz", "path": str(ws.npz(**arrays))}})]


def folder(layout, **data):
    return lambda ws: ["check", ws.config({"data": {"dataset": "directory", "path": str(ws.folder(layout)), **data}})]


def _bomb_yaml(levels=9):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        name, previous = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    return "\n".join(lines) + "\n"


X, Y = make_images(4, classes=3, size=8)
XT, YT = make_images(2, classes=3, size=8, seed=1)
IMAGES = {f"c{c}/{i}.png": None for c in range(2) for i in range(3)}

YAML_SYNTAX = [
    ("unclosed-flow", text("data: [digits\n"), "not valid YAML"),
    ("bad-indent", text("data:\n  dataset: digits\n    batch_size: 3\n"), "not valid YAML"),
    ("extra-brace", text("data: {dataset: digits}}\n"), "not valid YAML"),
    ("tab-indent", text("data:\n\tdataset: digits\n"), "not valid YAML"),
    ("reserved-indicator", text("data: {dataset: digits}\n@oops: 1\n"), "not valid YAML"),
    ("unterminated-quote", text("name: 'tiny\n"), "not valid YAML"),
    ("duplicate-key", text("data: {dataset: digits}\ndata: {dataset: mnist}\n"), "duplicate key 'data'"),
    ("undefined-alias", text("data: *nope\n"), "not valid YAML"),
    ("self-alias", text("x: &x [*x]\n"), "refers to the value that holds it"),
    ("self-alias-mapping", text("data: &d {dataset: digits, path: *d}\n"), "recursive"),
    ("alias-bomb", text(_bomb_yaml()), "alias bomb"),
    ("deep-nesting", text("a: " + "[" * 3000 + "]" * 3000 + "\n"), "nested too deeply"),
    ("nested-60", text("a: " + "[" * 60 + "]" * 60 + "\n"), "levels deep"),
    ("not-utf8", lambda ws: ["check", ws.write(b"name: caf\xe9\ndata: {dataset: digits}\n")], "not UTF-8"),
    ("nul-byte", text("data: {dataset: digits}\nname: a\x00b\n"), "not valid YAML"),
    ("python-tag", text("!!python/object/apply:os.system ['echo hi']\n"), "not valid YAML"),
    ("list-key", text("? [1]\n: 2\ndata: {dataset: digits}\n"), "keys must be plain names"),
    ("mapping-key", text("? {a: 1}\n: 2\n"), "keys must be plain names"),
]

NOT_A_MAPPING = [
    ("top-list", text("- a\n- b\n"), "must hold a mapping"),
    ("top-text", text("just text\n"), "must hold a mapping"),
    ("top-number", text("42\n"), "must hold a mapping"),
    ("top-empty", text(""), "'data' is required"),
    ("top-null", text("~\n"), "'data' is required"),
    ("top-flow-list", text("[]\n"), "must hold a mapping"),
    ("only-comments", text("# nothing\n"), "'data' is required"),
]

UNKNOWN_KEYS = [
    ("top", config({"trainig": {}}), "Did you mean 'training'"),
    ("capitalised-section", config({"Model": {"architecture": "mlp"}}), "unknown key 'Model'"),
    ("bare-key", text("A:\n"), "unknown key 'A'"),
    ("int-key", text("1: 2\ndata: {dataset: digits}\n"), "Keys should be strings"),
    ("data", config({"data": {"batchsize": 3}}), "Did you mean 'batch_size'"),
    ("augmentation", config({"augmentation": {"rotation": 10}}), "Did you mean 'rotation_range'"),
    ("model", config({"model": {"dropuot": 0.3}}), "Did you mean 'dropout'"),
    ("training", config({"training": {"epoch": 3}}), "Did you mean 'epochs'"),
    ("callbacks", config({"callbacks": {"early_stop": True}}), "unknown key 'callbacks.early_stop'"),
    ("early-stopping", config({"callbacks": {"early_stopping": {"patiense": 3}}}), "Did you mean 'patience'"),
    ("checkpoint", config({"callbacks": {"model_checkpoint": {"monitr": "loss"}}}), "Did you mean 'monitor'"),
    ("finetune", config({"finetune": {"freez": 3}}), "Did you mean 'freeze'"),
    ("evaluate", config({"evaluate": {"splt": "test"}}), "Did you mean 'split'"),
    ("regularizer", config({"model": {"kernel_regularizer": {"l3": 0.1}}}), "unknown key"),
    ("optimizer-arg", config({"training": {"optimizer": {"name": "sgd", "momentun": 0.9}}}), "Did you mean 'momentum'"),
    ("optimizer-lr", config({"training": {"optimizer": {"name": "adam", "learning_rate": 0.1}}}),
     "set training.learning_rate"),
    ("schedule-arg", config({"training": {"lr_schedule": {"name": "cosine", "alpah": 0.1}},
                             "callbacks": {"reduce_lr_on_plateau": False}}), "Did you mean 'alpha'"),
]

WRONG_TYPES = [
    ("training-text", config({"training": "fast"}), "must be a section"),
    ("training-list", config({"training": [1, 2]}), "must be a section"),
    ("training-bool", config({"training": True}), "must be a section"),
    ("data-text", config({"data": "digits"}), "must be a section"),
    ("batch-size-text", config({"data": {"batch_size": "abc"}}), "data.batch_size"),
    ("image-size-int", config({"data": {"image_size": 32}}), "data.image_size"),
    ("image-size-one", config({"data": {"image_size": [32]}}), "data.image_size"),
    ("image-size-text", config({"data": {"image_size": ["a", "b"]}}), "data.image_size"),
    ("flip-maybe", config({"augmentation": {"horizontal_flip": "maybe"}}), "augmentation.horizontal_flip"),
    ("dropout-text", config({"model": {"dropout": "high"}}), "model.dropout"),
    ("batch-norm-list", config({"model": {"batch_norm": [1]}}), "model.batch_norm"),
    ("epochs-fraction", config({"training": {"epochs": 3.5}}), "training.epochs"),
    ("optimizer-number", config({"training": {"optimizer": 5}}), "training.optimizer"),
    ("optimizer-no-name", config({"training": {"optimizer": {"momentum": 0.9}}}), "training.optimizer.name"),
    ("beta-text", config({"training": {"optimizer": {"name": "adam", "beta_1": "fast"}}}), "must be a number"),
    ("nesterov-text", config({"training": {"optimizer": {"name": "sgd", "nesterov": "yes please"}}}), "true or false"),
    ("milestones-text", config({"training": {"lr_schedule": {"name": "step", "milestones": "abc"}},
                                "callbacks": {"reduce_lr_on_plateau": False}}), "milestones"),
    ("milestones-missing", config({"training": {"lr_schedule": "step"}}), "milestones` is required"),
    ("schedule-alpha-list", config({"training": {"lr_schedule": {"name": "cosine", "alpha": [1]}}}),
     "must be a number"),
    ("csv-logger-text", config({"callbacks": {"csv_logger": "sometimes"}}), "callbacks.csv_logger"),
    ("top-k-int", config({"evaluate": {"top_k": 5}}), "evaluate.top_k"),
    ("name-list", config({"name": ["a"]}), "name"),
    ("seed-text", config({"seed": "abc"}), "seed"),
    ("output-dir-list", config({"output_dir": ["a"]}), "output_dir"),
    ("class-weight-99", config({"training": {"class_weight": {99: 1.0}}}), "not a class of digits"),
    ("class-weight-name", config({"training": {"class_weight": {"cat": 1.0}}}), "not a class of digits"),
    ("class-weight-text", config({"training": {"class_weight": "heavy"}}), "Input should be 'balanced'"),
    ("class-weight-negative", config({"training": {"class_weight": {1: -2.0}}}), "training.class_weight"),
]

BAD_NAMES = [
    ("dataset", config({"data": {"dataset": "cifar-10"}}), "Did you mean 'cifar10'"),
    ("architecture", config({"model": {"architecture": "vgg17"}}), "`cnnlab models` lists all"),
    ("architecture-empty", config({"model": {"architecture": ""}}), "model.architecture"),
    ("activation", config({"model": {"activation": "rleu"}}), "Did you mean 'relu'"),
    ("initializer", config({"model": {"kernel_initializer": "he_norm"}}), "Did you mean 'he_normal'"),
    ("optimizer", config({"training": {"optimizer": "adm"}}), "Did you mean 'adam'"),
    ("schedule", config({"training": {"lr_schedule": "cosin"}}), "Did you mean 'cosine'"),
    ("engine", config({"augmentation": {"engine": "torch"}}), "augmentation.engine"),
    ("scaling", config({"data": {"scaling": "zscore"}}), "data.scaling"),
    ("precision", config({"training": {"precision": "float16"}}), "training.precision"),
    ("loss", config({"training": {"loss": "mse"}}), "training.loss"),
    ("head", config({"model": {"architecture": "vgg11", "head": "avg"}}), "model.head"),
    ("monitor", config({"callbacks": {"early_stopping": {"monitor": "val_acc"}}}), "Did you mean 'val_accuracy'"),
    ("monitor-top3", config({"callbacks": {"model_checkpoint": {"monitor": "val_top3_accuracy"}}}), "monitor"),
    ("monitor-mode", config({"callbacks": {"reduce_lr_on_plateau": {"mode": "maximum"}}}), "mode"),
    ("weights-on-scratch", config({"model": {"architecture": "deep_cnn", "weights": "imagenet"}}),
     "has no pretrained weights"),
    ("option-not-honoured", config({"model": {"architecture": "resnet50", "batch_norm": True}}),
     "not an option of 'resnet50'"),
    ("lrn-on-vgg", config({"model": {"architecture": "vgg16", "local_response_norm": True}}), "not an option"),
    ("aux-on-alexnet", config({"model": {"architecture": "alexnet", "aux_logits": True}}), "not an option"),
    ("split", config({"evaluate": {"split": "testing"}}), "evaluate.split"),
    ("fill-mode", config({"augmentation": {"fill_mode": "mirror"}}), "augmentation.fill_mode"),
    ("mixup-on-generator", config({"augmentation": {"engine": "generator", "mixup_alpha": 0.2}}), "engine: layers"),
    ("schedule-and-plateau", config({"training": {"lr_schedule": "cosine"}, "callbacks": {"reduce_lr_on_plateau":
                                     {"patience": 3}}}), "both set the learning rate"),
    ("val-monitor-no-val", config({"data": {"validation_split": 0}}), "no validation data"),
]

NUMBERS = [
    ("epochs-zero", config({"training": {"epochs": 0}}), "training.epochs"),
    ("epochs-negative", config({"training": {"epochs": -3}}), "training.epochs"),
    ("batch-zero", config({"data": {"batch_size": 0}}), "data.batch_size"),
    ("split-big", config({"data": {"validation_split": 1.5}}), "data.validation_split"),
    ("split-negative", config({"data": {"validation_split": -0.1}}), "data.validation_split"),
    ("lr-zero", config({"training": {"learning_rate": 0}}), "training.learning_rate"),
    ("lr-negative", config({"training": {"learning_rate": -1e-3}}), "training.learning_rate"),
    ("lr-inf", text("data: {dataset: digits}\ntraining: {learning_rate: .inf}\n"), "finite"),
    ("lr-nan", text("data: {dataset: digits}\ntraining: {learning_rate: .nan}\n"), "training.learning_rate"),
    ("seed-negative", config({"seed": -1}), "seed"),
    ("seed-huge", config({"seed": 2**40}), "seed"),
    ("image-size-zero", config({"data": {"image_size": [0, 32]}}), "data.image_size"),
    ("image-size-huge", config({"data": {"image_size": [100000, 100000]}}), "data.image_size"),
    ("image-size-tiny", config({"data": {"image_size": [2, 2]}, "model": {"architecture": "deep_cnn"}}),
     "cannot take images"),
    ("dropout-one", config({"model": {"dropout": 1.0}}), "model.dropout"),
    ("factor-big", config({"callbacks": {"reduce_lr_on_plateau": {"factor": 1.5}}}), "factor"),
    ("hue-big", config({"augmentation": {"hue_delta": 0.9}}), "augmentation.hue_delta"),
    ("smoothing-one", config({"training": {"label_smoothing": 1}}), "training.label_smoothing"),
    ("top-k-zero", config({"evaluate": {"top_k": [0]}}), "evaluate.top_k"),
    ("patience-negative", config({"callbacks": {"early_stopping": {"patience": -1}}}), "patience"),
    ("clipnorm-text", config({"training": {"optimizer": {"name": "adam", "clipnorm": "big"}}}), "clipnorm"),
]

CONTAINMENT = [
    ("name-escapes", config({"name": "../../x"}), "one folder name"),
    ("name-absolute", config({"name": "/abs/path"}), "one folder name"),
    ("name-dotdot", config({"name": ".."}), "one folder name"),
    ("name-dot", config({"name": "."}), "one folder name"),
    ("name-space", config({"name": "a b"}), "one folder name"),
    ("name-empty", config({"name": ""}), "one folder name"),
    ("output-dir-up", config({"output_dir": "../../outside"}), "'..' components"),
    ("output-dir-inner-up", config({"output_dir": "runs/../../x"}), "'..' components"),
    ("train-name-escapes", config({"name": "../x"}, command="train"), "one folder name"),
    ("train-class-weight", config({"training": {"class_weight": {99: 1.0}}}, command="train"), "not a class"),
    ("dry-run-monitor", config({"callbacks": {"early_stopping": {"monitor": "acc"}}}, command="train --dry-run"),
     "monitor"),
]

BAD_SET = [
    ("no-equals", overrides("training.epochs"), "--set takes KEY=VALUE"),
    ("no-key", overrides("=3"), "--set takes KEY=VALUE"),
    ("empty-part", overrides("a..b=1"), "--set takes KEY=VALUE"),
    ("section-number", overrides("training=5"), "must be a section"),
    ("mapping-with-list-key", overrides("name={[1]: 2}"), "keys must be plain names"),
    ("bad-yaml-value", overrides("training.epochs=[1"), "not valid YAML"),
    ("typo", overrides("model.dropuot=0.3"), "--set model.dropuot=0.3: unknown key 'model.dropuot'. "
                                             "Did you mean 'model.dropout'"),
    ("npz-without-path", overrides("data.dataset=npz"), "data.path is required"),
    ("optimizer-arg", overrides("training.optimizer=sgd", "training.optimizer.momentun=0.9"), "momentum"),
    ("optimizer-mapping", overrides("training.optimizer={name: adam, beta_1: fast}"), "must be a number"),
    ("name-escapes", overrides("name=../../x"), "one folder name"),
    ("output-dir-up", overrides("output_dir=../../outside"), "'..' components"),
    ("alias-in-set", overrides("training=&x [*x]"), "refers to the value"),
]

PATHS = [
    ("missing-experiment", lambda ws: ["check", ws.root / "nope.yaml"], "does not exist"),
    ("experiment-is-folder", lambda ws: ["check", ws.root], None),
    ("npz-no-path", config({"data": {"dataset": "npz"}}), "data.path is required"),
    ("npz-empty-path", config({"data": {"dataset": "npz", "path": ""}}), "data.path is required"),
    ("npz-missing", lambda ws: ["check", ws.config({"data": {"dataset": "npz", "path": str(ws.root / "x.npz")}})],
     "x.npz"),
    ("npz-is-folder", lambda ws: ["check", ws.config({"data": {"dataset": "npz", "path": str(ws.root)}})], None),
    ("directory-missing", lambda ws: ["check", ws.config({"data": {"dataset": "directory",
                                                                    "path": str(ws.root / "none")}})],
     "is not a folder"),
    ("directory-is-file", lambda ws: ["check", ws.config({"data": {"dataset": "directory",
                                                                    "path": str(ws.write("x", "file.txt"))}})],
     "is not a folder"),
    ("test-path-missing", folder(IMAGES, test_path="/nonexistent/test"), "data.test_path"),
    ("weights-missing", config({"model": {"architecture": "mobilenet_v2", "weights": "/nonexistent.weights.h5"}}),
     "model.weights"),
]

NPZ = [
    ("no-images", npz(x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, int)), "no images"),
    ("string-pixels", npz(x_train=np.full((12, 8, 8), "a"), y_train=Y), "must hold numbers"),
    ("nan-pixels", npz(x_train=np.where(X > 100, np.nan, X.astype(float)), y_train=Y), "NaN"),
    ("pixels-over-255", npz(x_train=X.astype(float) * 10, y_train=Y), "0..255"),
    ("negative-labels", npz(x_train=X, y_train=Y - 1), "class indices"),
    ("fractional-labels", npz(x_train=X, y_train=Y + 0.5), "class indices"),
    ("test-label-unknown", npz(x_train=X, y_train=Y, x_test=XT, y_test=YT + 5), "every test class"),
    ("mismatched-lengths", npz(x_train=X, y_train=Y[:-2]), "must match"),
    ("wrong-keys", npz(images=X, labels=Y), "must hold x_train and y_train"),
    ("test-without-labels", npz(x_train=X, y_train=Y, x_test=XT), "both x_test and y_test"),
    ("one-class", npz(x_train=X, y_train=np.zeros_like(Y)), "at least 2 classes"),
    ("flat-pixels", npz(x_train=X.reshape(len(X), -1)[:, 0], y_train=Y), "images shaped"),
    ("four-channels", npz(x_train=np.zeros((12, 8, 8, 4), np.uint8), y_train=Y), "images shaped"),
    ("test-shape-differs", npz(x_train=X, y_train=Y, x_test=np.zeros((6, 9, 9), np.uint8), y_test=YT),
     "must match"),
    ("not-an-npz", lambda ws: ["check", ws.config({"data": {"dataset": "npz",
                                                             "path": str(ws.write("text", "fake.npz"))}})],
     "not a readable .npz"),
]


def _symlink_loop(ws):
    root = ws.folder(IMAGES)
    (root / "c0" / "loop.png").symlink_to(root / "c0" / "loop.png")
    (root / "c1" / "sub").symlink_to(root / "c1")
    return ["check", ws.config({"data": {"dataset": "directory", "path": str(root)}})]


FOLDERS = [
    ("flat", folder({"a.png": None, "b.png": None}), "needs class sub-folders"),
    ("one-class", folder({"only/a.png": None, "only/b.png": None}), "at least 2"),
    ("empty-class", folder({**IMAGES, "c2/readme.txt": b"no images"}), None),
    ("empty-class-folder", lambda ws: ["check", ws.config({"data": {"dataset": "directory", "path": str(
        _with_empty_class(ws.folder(IMAGES)))}})], "has no usable images"),
    ("empty-folder", lambda ws: ["check", ws.config({"data": {"dataset": "directory", "path": str(
        _mkdir(ws.root / "empty"))}})], None),
    ("symlink-loop", _symlink_loop, None),
    ("zero-byte-image", folder({**IMAGES, "c0/empty.png": b""}), "bad image file"),
    ("truncated-image", folder({**IMAGES, "c1/cut.png": good_png(64)[:80]}), "bad image file"),
    ("decompression-bomb", folder({**IMAGES, "c1/bomb.png": bomb_png()}), "decompression bomb"),
    ("not-an-image", folder({**IMAGES, "c0/notes.txt": b"hello"}), "not an image file"),
    ("test-folder-extra-class", lambda ws: ["check", ws.config({"data": {
        "dataset": "directory", "path": str(ws.folder(IMAGES)),
        "test_path": str(_test_folder(ws))}})], "training data does not have"),
]


def _mkdir(path):
    path.mkdir()
    return path


def _with_empty_class(root):
    (root / "c2").mkdir()
    return root


def _test_folder(ws):
    root = ws.root / "test"
    for relative in ("c0/a.png", "zz/b.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(good_png())
    return root


def _lambda_model(ws):
    import keras

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(
        keras.layers.Lambda(lambda x: x / 255.0)(inputs)))
    path = ws.root / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def _truncated_model(ws):
    path = ws.root / "cut.keras"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    return path


TARGETS = [  # what a command opens: runs and models (the earlier run's model.keras is not a zip)
    ("evaluate-latest-run-corrupt-model", lambda ws: ["evaluate"], "truncated or corrupt"),
    ("evaluate-not-a-run", lambda ws: ["evaluate", _mkdir(ws.root / "empty")], "is not a run folder"),
    ("finetune-not-a-run", lambda ws: ["finetune", _mkdir(ws.root / "empty")], "is not a run folder"),
    ("runs-none", lambda ws: ["runs", _mkdir(ws.root / "empty")], "no runs under"),
    ("evaluate-bare-model-without-data", lambda ws: ["evaluate", _truncated_model(ws)], "--data-dir"),
    ("evaluate-truncated-model", lambda ws: ["evaluate", _truncated_model(ws), "--data-dir", ws.folder(IMAGES)],
     "truncated or corrupt"),
    ("evaluate-lambda-model-safe-mode", lambda ws: ["evaluate", _lambda_model(ws), "--data-dir", ws.folder(IMAGES)],
     "--unsafe"),
    ("train-unwritable-output", lambda ws: ["train", ws.config(), "--output-dir", "/proc/cnnlab-runs"],
     "cannot create the run folder"),
    ("finetune-freeze-negative-in-file", config({"finetune": {"freeze": -1}}), "finetune.freeze"),
]


CORPUS = [(f"{group}/{name}", build, expected)
          for group, cases in (("yaml", YAML_SYNTAX), ("top", NOT_A_MAPPING), ("unknown", UNKNOWN_KEYS),
                               ("type", WRONG_TYPES), ("name", BAD_NAMES), ("number", NUMBERS),
                               ("contain", CONTAINMENT), ("set", BAD_SET), ("path", PATHS), ("npz", NPZ),
                               ("folder", FOLDERS), ("target", TARGETS))
          for name, build, expected in cases]


def test_the_corpus_is_large_and_distinct():
    ids = [case_id for case_id, _, _ in CORPUS]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)


@pytest.fixture
def earlier_run(tmp_path):
    """A finished run that no bad input may touch: its files and their bytes."""
    run = tmp_path / "runs" / "tiny" / "20240101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({**BASE, "output_dir": str(tmp_path / "runs")}))
    (run / "model.keras").write_bytes(np.random.default_rng(0).bytes(4096))
    (run / "history.csv").write_text("epoch,loss\n0,1.0\n")
    return tmp_path / "runs"


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case_id, build, expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_is_one_error_line_and_touches_nothing(case_id, build, expected, cli, tmp_path, earlier_run,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(earlier_run)
    result = cli(*build(Workspace(tmp_path)))
    assert result.exit_code == 2, result.output
    line = error_line(result)
    if expected:
        assert expected in line, line
    assert snapshot(earlier_run) == before
