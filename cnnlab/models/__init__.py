"""The model zoo. `cnnlab.models.registry` holds the registry and `build_model`.

Importing any ``cnnlab.models`` module runs this first, and this imports every
family in one fixed order, so the registry is the same whichever module a
command imports first (a family never imports another family).
"""

from cnnlab.models import mlp, deep_cnn, alexnet, vgg, inception, resnet, fcn, unet, applications  # noqa: F401, I001
