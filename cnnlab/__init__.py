"""cnnlab: train, fine-tune and evaluate classic CNNs with Keras 3 from YAML experiment files."""

__version__ = "0.1.0"
