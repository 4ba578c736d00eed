"""Compile and fit: optimizers, learning-rate schedules, callbacks, resume."""
