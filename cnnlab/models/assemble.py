"""An experiment's model: the registry's architecture for the data's images and classes, its scaling layer
first and its task's output activation last."""


def build(cfg, data):
    """The experiment's model for `data`, scaling included, finished by its task (`Task.finish_model`)."""
    from cnnlab.data.scaling import needs_stats
    from cnnlab.tasks import task_of

    stats = data.channel_stats() if needs_stats(cfg.data.scaling) else None
    return task_of(cfg).finish_model(assemble(cfg, data.input_shape, data.classes, stats), cfg, data)


def assemble(cfg, shape, classes, stats=None):
    """The model of `cfg` for `shape` images and `classes` classes, its scaling layer first."""
    from cnnlab.data.scaling import scaling_layers
    from cnnlab.models.registry import build_model
    from cnnlab.tasks import task_of

    return build_model(cfg.model, shape, classes, preprocessing=scaling_layers(cfg.data.scaling, cfg.model, stats),
                       output_activation=task_of(cfg).activation)
