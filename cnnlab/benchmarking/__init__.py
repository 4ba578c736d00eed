"""Measuring models: what `cnnlab benchmark` and ``cnnlab models --params`` report, counted or timed.

- `cnnlab.benchmarking.flops`: floating-point operations and multiply-adds per image, counted by
  TensorFlow's profiler on the model's traced graph (the one home of "what a model costs");
- `cnnlab.benchmarking.timing`: timed loops of about a fixed duration, and the median and spread of
  repetitions that alternate between the contenders;
- `cnnlab.benchmarking.memory`: a process's resident memory now and at its peak;
- `cnnlab.benchmarking.worker`: the child process that builds, compiles and times one architecture
  (``python -m cnnlab.benchmarking.worker``), and `cnnlab.benchmarking.workers`, its parent's side;
- `cnnlab.benchmarking.contenders`: a run's model in Keras and in every export format, side by side;
- `cnnlab.benchmarking.table`: the table: terminal lines and CSV.

Importing this package imports neither TensorFlow nor Keras.
"""
