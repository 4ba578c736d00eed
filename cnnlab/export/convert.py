"""Writing an artifact and what it needs: the images it is checked on, int8's calibration images, the conversion.

Shared by `cnnlab export` (`cnnlab.commands.export`) and `cnnlab benchmark RUN`
(`cnnlab.benchmarking.contenders`). Importing this module does not import TensorFlow.
"""

from cnnlab.errors import CnnlabError, DataError

CALIBRATION_IMAGES = 300  # training images int8 quantisation calibrates on
DATA_DIR_FIX = "give --data-dir, a folder of class sub-folders."  # `cnnlab export`'s way to images


def check_data(opened, model, data_dir):
    """The images the check runs on (``--data-dir`` or the run's test split) and how to call them."""
    from cnnlab.inference.inputs import check_model_fits, folder_data

    cfg = opened.config()
    if data_dir:
        bundle = folder_data(data_dir, model, opened.class_names(), cfg.data.batch_size if cfg else 64)
        what = f"images of {data_dir}"
    else:
        bundle, what = run_test_split(opened), "test images"
    check_model_fits(model, bundle, opened.run or opened.model_path)
    return bundle, what


def run_test_split(opened, fix=DATA_DIR_FIX):
    """The run's data (`cnnlab.data.pipeline.load_data`), which must hold a test split to check a model on.

    Raises:
        DataError: the run has none (its data.test_split is 0 and its dataset has no test split of its own);
            the message ends with `fix`.
    """
    from cnnlab.data.pipeline import load_data

    cfg = opened.config()
    bundle = load_data(cfg)
    if bundle.test is None:
        raise DataError(f"the run {opened.run} has no test split to check the model on (data.test_split: "
                        f"{cfg.data.test_split}, and {cfg.data.dataset} has none of its own): {fix}")
    return bundle


def calibration_data(opened, bundle, data_dir, echo):
    """int8's representative dataset: up to `CALIBRATION_IMAGES` training images, one at a time, raw pixels."""
    import numpy as np

    from cnnlab.data.pipeline import load_data, make_dataset

    if opened.run is None:
        echo(f"Calibrating int8 on the images of {data_dir} (a bare .keras file has no training split).")
        examples = bundle.train
    else:
        examples = load_data(opened.config()).train if data_dir else bundle.train
    rng = np.random.default_rng(0)
    index = np.sort(rng.choice(len(examples), min(CALIBRATION_IMAGES, len(examples)), replace=False))
    images = np.concatenate([x.numpy() for x, _ in make_dataset(examples.take(index), bundle.input_shape, 64)])

    def representative_dataset():
        for image in images:
            yield [image[None]]

    return representative_dataset


def convert(spec, model, path, quantize, calibration):
    """Write the artifact with ``model.export``; a converter's failure is one `CnnlabError`."""
    try:
        spec.write(model, path, quantize, calibration)
    except Exception as exc:  # TensorFlow's converter and tf2onnx raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CnnlabError(f"--format {spec.name} --quantize {quantize} could not convert the model: {first} "
                          "(--verbose shows the traceback).") from exc
