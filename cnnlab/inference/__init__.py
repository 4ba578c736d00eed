"""Inference, for every command that runs a trained model: fitting inputs to it, batched prediction, TTA.

- `cnnlab.inference.inputs`: does a model take the data's images and predict its classes;
- `cnnlab.inference.predictions`: a batch's or a whole split's main output;
- `cnnlab.inference.tta`: test-time augmentation's views and their average.

Loading a model is `cnnlab.rundir.load_model` (a run's model, in Keras's safe mode).
"""
