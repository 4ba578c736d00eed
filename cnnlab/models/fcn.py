"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell 2015) over the VGG16 body.

*Deep Learning from Scratch* ch.8's segmentation network: the classifier's fully
connected layers become convolutions (``fc6`` a 7x7, ``fc7`` a 1x1), a 1x1
convolution scores every class at every place of the 1/32-size map, and a transposed
convolution initialised to bilinear upsampling brings the scores back to the image's
size. FCN-16s and FCN-8s first add the scores of ``pool4`` (and ``pool3``), each
upsampled 2x on the way: the skips that restore what the 32-pixel stride loses.
The body's layers are named as VGG16's (``block3_conv2``...), so ``model.weights``
loads a pretrained body by name (`load_body`): ``imagenet`` (keras.applications.VGG16's;
``data.scaling: backbone`` then scales as VGG16 wants), a cnnlab ``vgg16`` run's
``model.keras``, or a VGG16 weights file. Convolutions pad ``same`` (no 100-pixel input
padding and cropping as in the paper's Caffe), so any size whose 1/32 is at least
1x1 fits; ``model.width`` scales every filter count (1: the paper's 64...512, 4096).
"""

from keras import layers

from cnnlab.models.blocks import BilinearUpsampling, conv_kwargs, crop_to, pixel_predictions, scaled
from cnnlab.models.registry import register_model
from cnnlab.models.vgg import vgg_body

SKIPS = {"fcn32s": (), "fcn16s": ("block4_pool",), "fcn8s": ("block4_pool", "block3_pool")}


def fcn(x, classes, cfg, skips):
    """The body, ``fc6``/``fc7`` as convolutions, the class scores, then 2x upsamplings adding each skip's
    scores (zero-initialised, so training starts from the coarser net's output), and the last upsampling."""
    height, width = x.shape[1:3]
    if cfg.weights and x.shape[-1] == 1:  # pretrained bodies take colour images
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    pools = vgg_body(x, cfg, depth=16)
    x = pools["block5_pool"]
    for name, size in (("fc6", 7), ("fc7", 1)):
        x = layers.Conv2D(scaled(4096, cfg), size, padding="same", activation=cfg.activation, name=name,
                          **conv_kwargs(cfg))(x)
        if cfg.dropout:
            x = layers.Dropout(cfg.dropout, name=f"{name}_dropout")(x)
    x = layers.Conv2D(classes, 1, name="score_fr", **conv_kwargs(cfg))(x)
    stride = 32
    for skip in skips:
        x = _upsample(x, classes, 2, f"upscore_{skip}")
        skip_scores = layers.Conv2D(classes, 1, kernel_initializer="zeros", name=f"score_{skip}")(pools[skip])
        x = crop_to(x, *skip_scores.shape[1:3], name=f"crop_{skip}")
        x = layers.Add(name=f"fuse_{skip}")([x, skip_scores])
        stride //= 2
    x = _upsample(x, classes, stride, "upscore")
    return pixel_predictions(crop_to(x, height, width, name="crop"))


def _upsample(x, classes, factor, name):
    """A transposed convolution, kernel ``2 * factor`` and stride `factor`, initialised to bilinear upsampling."""
    return layers.Conv2DTranspose(classes, 2 * factor, strides=factor, padding="same", use_bias=False,
                                  kernel_initializer=BilinearUpsampling(), name=name)(x)


def load_body(model, weights):
    """Copy a pretrained VGG16 body into `model`'s ``block*`` layers by name: ``imagenet``, a ``.keras`` model
    (a cnnlab ``vgg16`` run's), or a weights file of keras.applications.VGG16 without its top."""
    import keras

    from cnnlab.errors import ConfigError

    try:
        if str(weights).endswith(".keras"):
            source = keras.models.load_model(weights, compile=False)
        else:
            source = keras.applications.VGG16(include_top=False, weights=None if weights != "imagenet" else weights)
            if weights != "imagenet":
                source.load_weights(weights)
    except Exception as exc:  # offline downloads, unreadable files: Keras raises several types
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"`model.weights` {weights!r}: could not load a VGG16 body ({detail}). Give imagenet "
                          "(downloaded by Keras into its cache), a cnnlab vgg16 run's model.keras, or a VGG16 "
                          "weights file without its top.") from None
    names = {layer.name for layer in source.layers}
    for layer in model.layers:
        if not layer.name.startswith("block") or not layer.weights:
            continue
        if layer.name not in names:
            raise ConfigError(f"`model.weights` {weights!r} has no layer {layer.name}: it must hold VGG16's "
                              "convolutions (a cnnlab vgg16 run's model.keras, or imagenet).")
        theirs = source.get_layer(layer.name).get_weights()
        if [w.shape for w in theirs] != [tuple(w.shape) for w in layer.weights]:
            raise ConfigError(f"`model.weights` {weights!r}: {layer.name} holds {[w.shape for w in theirs]} there "
                              f"but {[tuple(w.shape) for w in layer.weights]} here. A pretrained body needs "
                              "model.width 1 and model.batch_norm as it was trained (false for imagenet).")
        layer.set_weights(theirs)


def _register(name, skips):
    def build(x, classes, cfg):
        return fcn(x, classes, cfg, skips)

    build.__doc__ = f"{name.upper()}: VGG16 body, {'skips from ' + ', '.join(skips) if skips else 'no skips'}."
    register_model(name, pretrained_body=load_body)(build)


for _name, _skips in SKIPS.items():
    _register(_name, _skips)
