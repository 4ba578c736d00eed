"""Datasets: sources (registry), splitting, tf.data pipelines and augmentation."""
