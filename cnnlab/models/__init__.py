"""The model zoo. `cnnlab.models.registry` holds the registry and `build_model`."""
