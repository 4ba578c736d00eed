"""Out-of-sample probabilities for confident learning, and the label issues the run's task finds in them.

Confident learning needs each image's probabilities from a model that did not train on
it: a run's model on the splits it was not trained on (validation, test), and, for the
training split, a model cross-validated over K folds (``--folds K``): K copies of the
experiment's model, each trained on the other folds, each predicting its own fold.
"""

from dataclasses import replace

import numpy as np

from cnnlab.errors import CnnlabError


def run_probabilities(model, bundle, splits=("val", "test")):
    """``{split: probabilities}`` of a run's `model` on the `splits` the data has."""
    from cnnlab.inference.predictions import predict_split

    return {split: predict_split(model, bundle, split)[0] for split in splits if getattr(bundle, split) is not None}


def cross_validated_probabilities(cfg, bundle, folds, echo=print):
    """The training split's probabilities, each image's from the fold model that did not see it."""
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = bundle.train.labels
    by = bundle.task.stratify(labels)
    fewest = int(np.bincount(np.asarray(by, int)).min()) if by is not None else len(labels)
    if fewest < folds:
        raise CnnlabError(f"--folds {folds} needs at least {folds} training images of every class (each fold "
                          f"holds some of each); the rarest class has {fewest}. Give --folds {max(fewest, 2)} or "
                          "fewer.")
    splitter = (StratifiedKFold if by is not None else KFold)(n_splits=folds, shuffle=True, random_state=cfg.seed)
    probabilities = None
    for number, (trained, held) in enumerate(splitter.split(np.zeros(len(labels)), by), 1):
        echo(f"Fold {number} of {folds}: training on {len(trained)} images, predicting {len(held)}")
        out = fold_probabilities(cfg, bundle, trained, held)
        if probabilities is None:
            probabilities = np.zeros((len(labels), *out.shape[1:]), np.float32)
        probabilities[held] = out
    return probabilities


def fold_probabilities(cfg, bundle, trained, held):
    """Train the experiment's model on the training examples `trained`; its probabilities on `held`."""
    import keras

    from cnnlab.inference.predictions import predict_split
    from cnnlab.models.assemble import build
    from cnnlab.training.fit import compile_model

    part = replace(bundle, train=bundle.train.take(trained), val=None, test=bundle.train.take(held), _stats=None)
    model = build(cfg, part)
    steps = part.steps_per_epoch(cfg.training.steps_per_epoch)
    compile_model(model, cfg, part.classes, steps, labels=part.train.labels)
    epochs = cfg.training.epochs
    model.fit(part.train_dataset(epochs=epochs, steps_per_epoch=cfg.training.steps_per_epoch,
                                 outputs=len(model.outputs)),
              epochs=epochs, steps_per_epoch=steps, verbose=0,
              class_weight=part.task.class_weight(cfg, part.train.labels, part.class_names))
    probabilities = predict_split(model, part, "test")[0]
    keras.backend.clear_session()
    return probabilities
