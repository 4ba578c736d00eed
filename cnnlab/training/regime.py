"""What makes the figures logged while training differ from the same model measured afterwards.

Keras logs a training epoch's loss and metrics while the model trains: dropout drops
units, batch normalisation normalises by each batch, the images are augmented or
mixed, the targets smoothed, the loss carries the weight penalty, and the weights move
during the epoch. Measured afterwards, as the test split is, none of this happens. The
book's deep CNN thus logs a training accuracy near 0.6 beside a test accuracy of
0.99: `differences` names the reasons a run has, for the report to say.
"""

from cnnlab.models.anatomy import DROPOUTS
from cnnlab.models.heads import auxiliary_outputs

def differences(model, cfg):
    """Sentences naming what, in `model` and `cfg`, makes its logged training figures unlike measured ones."""
    from cnnlab.data.augment import is_active
    from cnnlab.training.fit import AUX_LOSS_WEIGHT
    from cnnlab.keras_private import flatten_layers

    layers = flatten_layers(model, include_self=False)
    rates = sorted({float(getattr(layer, "rate", 0)) for layer in layers if type(layer).__name__ in DROPOUTS} - {0.0})
    found = []
    if rates:
        count = sum(type(layer).__name__ in DROPOUTS and getattr(layer, "rate", 0) > 0 for layer in layers)
        listed = ", ".join(f"{rate:g}" for rate in rates)
        found.append(f"dropout drops units while training ({count} layer(s), rate {listed})")
    if any(type(layer).__name__ == "BatchNormalization" and layer.trainable for layer in layers):
        found.append("batch normalisation uses each batch's own statistics while training, its moving averages "
                     "when measured")
    aug = cfg.augmentation
    if aug.mixup_alpha or aug.cutmix_alpha:
        mixed = " and ".join(n for n, a in (("mixup", aug.mixup_alpha), ("cutmix", aug.cutmix_alpha)) if a)
        found.append(f"{mixed} blend(s) pairs of images and their labels: training accuracy is scored against "
                     "mixed labels")
    if is_active(aug.model_copy(update={"mixup_alpha": 0.0, "cutmix_alpha": 0.0})):
        found.append("augmentation changes every training image")
    if cfg.training.label_smoothing:
        found.append(f"label smoothing ({cfg.training.label_smoothing:g}) softens the targets of the training loss")
    if model.losses:
        found.append("the training loss adds the weight penalty (kernel_regularizer)")
    if cfg.training.class_weight is not None:
        found.append("class weights (training.class_weight) weigh each image's loss by its class")
    if auxiliary_outputs(model):
        found.append(f"the training loss adds the auxiliary classifiers' losses (weight {AUX_LOSS_WEIGHT:g} each)")
    return found
