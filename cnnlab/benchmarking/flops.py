"""What one image costs a model, counted: TensorFlow's profiler on the model's traced graph.

The model is traced at batch 1 (``tf.function(model).get_concrete_function``) and
``tf.compat.v1.profiler`` adds up the floating-point operations its registry knows
for every op of that graph: a Conv2D of ``P`` output positions costs
``2 * P * k * k * C_in * C_out``, a MatMul ``2 * m * n * k``, a bias add, a
normalisation step, a pooling window, the softmax their elements. Ops it has no
count for (ReLU and the other activations) count 0, as in keras-flops and the
papers' figures. Multiply-adds are half the FLOPs of the ops that multiply and add
(`MULTIPLY_ADD_OPS`), which is what papers quote (VGG16: 15.5 G, ResNet-50: 3.8 G).

The graph is profiled as traced, without freezing its variables into constants:
the shapes the profiler needs are static in it already, and freezing VGG16's 138
million weights would cost half a minute for the same totals. The profiler does not
look inside the functions a graph calls, so each called function's graph is profiled
too, once per call: Keras runs a grouped convolution (ConvNeXt's depthwise 7x7) on
TensorFlow as a nested XLA function, which the profiler alone would count as 0. (A called
function's graph is reached through TensorFlow's private API: `cnnlab.keras_private`.)
"""

from dataclasses import dataclass

from cnnlab.errors import CnnlabError
from cnnlab.keras_private import called_function_graph

# The ops whose FLOPs are multiply-adds (2 FLOPs each): convolutions (depthwise, transposed) and matrix products.
MULTIPLY_ADD_OPS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul", "BatchMatMul",
                    "BatchMatMulV2", "BatchMatMulV3")
METHOD = ("FLOPs: counted by TensorFlow's profiler on the traced graph at batch 1 (activations such as ReLU "
          "count 0); multiply-adds: half the FLOPs of the convolutions and matrix products")


@dataclass(frozen=True)
class Operations:
    """What one forward pass of one image costs.

    Attributes:
        flops: every floating-point operation the profiler counts.
        multiply_adds: the multiply-adds of the convolutions and matrix products (half their FLOPs).
        by_op: FLOPs per op type (``{"Conv2D": ..., "MatMul": ...}``).
    """

    flops: int
    multiply_adds: int
    by_op: dict


def count_operations(model, input_shape=None):
    """Count the operations of one forward pass of one image through `model` (inference mode).

    Args:
        model: a Keras model on the TensorFlow backend.
        input_shape: ``(H, W, C)``; default: the model's own input shape.

    Raises:
        CnnlabError: Keras runs on another backend, or the model has no fixed input shape.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise CnnlabError(f"operations are counted on TensorFlow: KERAS_BACKEND is {keras.backend.backend()} "
                          "(TensorFlow's profiler counts them; run with KERAS_BACKEND=tensorflow).")
    shape = tuple(input_shape or model.input_shape[1:])
    if None in shape:
        raise CnnlabError(f"operations are counted for a fixed image size; the model takes {model.input_shape}: "
                          "give the input shape.")
    by_op = _profile(_traced_graph(model, shape))
    madds = sum(by_op.get(op, 0) for op in MULTIPLY_ADD_OPS) // 2
    return Operations(flops=sum(by_op.values()), multiply_adds=madds, by_op=by_op)


def _traced_graph(model, shape):
    """The graph of `model` called on one ``shape`` image in inference mode."""
    import tensorflow as tf

    def forward(images):
        return model(images, training=False)

    function = tf.function(forward, autograph=False)
    return function.get_concrete_function(tf.TensorSpec((1, *shape), tf.float32)).graph


CALLS = ("PartitionedCall", "StatefulPartitionedCall")  # the ops that run a function of the graph's library


def _profile(graph, cache=None):
    """``{op type: FLOPs}`` of `graph` and of the functions it calls (each call counted)."""
    cache = {} if cache is None else cache
    found = _profile_one(graph)
    for op in graph.get_operations():
        if op.type not in CALLS:
            continue
        name = op.get_attr("f").name
        if name not in cache:
            cache[name] = _profile(called_function_graph(graph, name), cache)
        for kind, flops in cache[name].items():
            found[kind] = found.get(kind, 0) + flops
    return found


def _profile_one(graph):
    """``{op type: FLOPs}`` of the ops of `graph` itself, from the profiler's per-op-type view."""
    import tensorflow as tf

    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"  # the profiler prints its table to stdout otherwise
    found = {}

    def walk(node):
        for child in node.children:
            found[child.name] = found.get(child.name, 0) + child.float_ops
            walk(child)

    walk(tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options))
    return {op: flops for op, flops in found.items() if flops}
