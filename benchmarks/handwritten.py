"""What a user writes by hand instead of cnnlab, for `whole_process.py` to time against it.

    python benchmarks/handwritten.py train    --npz mnist.npz --out DIR [--epochs 3] [--precision float32]
    python benchmarks/handwritten.py finetune --npz mnist.npz --model DIR/model.keras --out DIR2
                                              [--freeze 4] [--head-epochs 1] [--epochs 1]
    python benchmarks/handwritten.py evaluate --npz mnist.npz --model DIR/model.keras --out DIR
    python benchmarks/handwritten.py predict  --model DIR/model.keras --images FOLDER --out predictions.csv

One plain Keras script, with no cnnlab import, doing what the matching cnnlab command does
for the deep CNN of *Deep Learning from Scratch* on MNIST (`experiments/mnist_deep_cnn.yaml`):

- ``train``: the same 54,000 / 6,000 split (scikit-learn's stratified split, seed 42, as
  ``data.validation_split: 0.1`` draws it), the book's network, Adam at 1e-3, batches of
  100, ``model.fit`` on numpy arrays with the validation data and a CSVLogger, then
  ``model.save`` and the test set's loss and accuracy;
- ``finetune``: the two phases of ``cnnlab finetune --freeze N``: the head after
  ``flatten`` trained on a frozen base, then layers N.. at 1e-5, then saved and scored;
- ``evaluate``: the test set's accuracy, a classification report, the confusion matrix
  and its PNG, and metrics.json;
- ``predict``: every image of a folder, its top 3 classes into a CSV.
"""

import argparse
import csv
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

SEED, BATCH, CLASSES = 42, 100, 10


def conv(filters, padding="same"):
    return layers.Conv2D(filters, 3, padding=padding, activation="relu", kernel_initializer="he_normal")


def deep_cnn():
    """The book's DeepConvNet; its 4th convolution pads by 2 (28 -> 14 -> 8 -> 4)."""
    inputs = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    for block, filters in enumerate((16, 32, 64)):
        x = conv(filters)(x)
        if block == 1:
            x = layers.ZeroPadding2D(2)(x)
        x = conv(filters, padding="valid" if block == 1 else "same")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(50, activation="relu", kernel_initializer="he_normal")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(CLASSES, kernel_initializer="he_normal")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, layers.Activation("softmax", dtype="float32")(x))


def compiled(model, learning_rate):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5_accuracy")])
    return model


def mnist(npz):
    """``(x_train, y_train), (x_val, y_val), (x_test, y_test)``: float32 images (N, 28, 28, 1), one-hot labels."""
    from sklearn.model_selection import train_test_split

    with np.load(npz) as data:
        x, y, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    train, val = train_test_split(np.arange(len(x)), test_size=0.1, stratify=y, random_state=SEED)
    train, val = np.sort(train), np.sort(val)

    def pair(images, labels):
        return images[..., None].astype("float32"), keras.utils.to_categorical(labels, CLASSES)

    return pair(x[train], y[train]), pair(x[val], y[val]), pair(x_test, y_test)


def fit(model, data, out, epochs, initial_epoch=0):
    (x, y), val, _ = data
    Path(out).mkdir(parents=True, exist_ok=True)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, initial_epoch=initial_epoch, validation_data=val,
              callbacks=[keras.callbacks.CSVLogger(str(Path(out) / "history.csv"), append=True)], verbose=2)


def save_and_score(model, data, out):
    _, _, (x_test, y_test) = data
    model.save(Path(out) / "model.keras")
    loss, accuracy, top5 = model.evaluate(x_test, y_test, batch_size=BATCH, verbose=0)
    print(f"test loss {loss:.4f}, accuracy {accuracy:.4f}, top-5 {top5:.4f}")


def train(args):
    keras.utils.set_random_seed(SEED)
    keras.config.set_dtype_policy(args.precision)
    data, model = mnist(args.npz), compiled(deep_cnn(), 1e-3)
    fit(model, data, args.out, args.epochs)
    save_and_score(model, data, args.out)


def finetune(args):
    keras.utils.set_random_seed(SEED)
    model = keras.models.load_model(args.model)
    head = [layer.name for layer in model.layers].index("flatten") + 1
    for index, layer in enumerate(model.layers):
        layer.trainable = index >= head
    data = mnist(args.npz)
    fit(compiled(model, 1e-3), data, args.out, args.head_epochs)
    for index, layer in enumerate(model.layers):
        layer.trainable = index >= min(args.freeze, head)
    fit(compiled(model, 1e-5), data, args.out, args.head_epochs + args.epochs, args.head_epochs)
    save_and_score(model, data, args.out)


def evaluate(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, classification_report, confusion_matrix

    model = keras.models.load_model(args.model)
    _, _, (x_test, y_test) = mnist(args.npz)
    probs = model.predict(x_test, batch_size=BATCH, verbose=0)
    truth, predicted = y_test.argmax(1), probs.argmax(1)
    print(classification_report(truth, predicted, digits=4))
    matrix = confusion_matrix(truth, predicted)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    ConfusionMatrixDisplay(matrix).plot()
    plt.savefig(Path(args.out) / "confusion_matrix.png", dpi=100)
    metrics = {"accuracy": float((truth == predicted).mean()), "confusion_matrix": matrix.tolist()}
    (Path(args.out) / "metrics.json").write_text(json.dumps(metrics))
    print(f"accuracy {metrics['accuracy']:.4f}")


def predict(args):
    model = keras.models.load_model(args.model)
    paths = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    images = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, color_mode="grayscale")) for p in paths])
    probs = model.predict(images, batch_size=BATCH, verbose=0)
    top = np.argsort(-probs, axis=1)[:, :3]
    with open(args.out, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "top1", "p1", "top2", "p2", "top3", "p3"])
        for path, row, p in zip(paths, top, probs):
            writer.writerow([str(path), *[v for k in row for v in (int(k), f"{p[k]:.4f}")]])
    print(f"wrote {args.out} ({len(paths)} images)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=("train", "finetune", "evaluate", "predict"))
    parser.add_argument("--npz")
    parser.add_argument("--model")
    parser.add_argument("--images")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--freeze", type=int, default=4)
    parser.add_argument("--precision", default="float32")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    {"train": train, "finetune": finetune, "evaluate": evaluate, "predict": predict}[arguments.verb](arguments)
