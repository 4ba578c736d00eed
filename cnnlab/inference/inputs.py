"""Fitting inputs to a model: a model must take the data's images and predict its classes; a folder as a split."""

from cnnlab.errors import DataError
from cnnlab.models.heads import main_output_shape


def folder_data(data_dir, model, class_names, batch_size=64, on_bad_image="error"):
    """Every image of a class-sub-folder folder as the test split, fitted to the model's input."""
    from cnnlab.data.folders import scan_folder
    from cnnlab.data.pipeline import DataBundle
    from cnnlab.data.sources import Examples

    scan = scan_folder(data_dir, on_bad_image=on_bad_image, key="--data-dir", class_names=class_names)
    examples = Examples(labels=scan.labels, paths=scan.paths)
    return DataBundle(train=examples, val=None, test=examples, class_names=list(scan.class_names),
                      input_shape=tuple(model.input_shape[1:]), batch_size=batch_size, seed=0)


def check_input_shape(model, data, where):
    """A model whose input differs from the data's images is an error saying what to set."""
    shape = tuple(model.input_shape[1:])
    if shape != tuple(data.input_shape):
        raise DataError(f"the model in {where} takes images of {shape} but the data gives "
                        f"{tuple(data.input_shape)}: set data.image_size to {list(shape[:2])} and "
                        f"data.color_mode to {'grayscale' if shape[-1] == 1 else 'rgb'}.")


def check_model_fits(model, data, where):
    """A model must take the data's images and predict its classes (evaluate, export, ensemble, report)."""
    check_input_shape(model, data, where)
    out = main_output_shape(model)[-1]
    if out != data.classes:
        raise DataError(f"the model in {where} predicts {out} classes but the data has {data.classes} "
                        f"({', '.join(data.class_names[:10])}): use data with the same classes.")
