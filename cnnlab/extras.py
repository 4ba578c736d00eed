"""cnnlab's optional dependencies: which extra of ``setup.cfg`` brings the packages a command needs."""

import importlib.util

from cnnlab.errors import CnnlabError

# extra -> the modules it brings (setup.cfg's [options.extras_require])
EXTRAS = {"tune": ("optuna",), "track": ("mlflow",), "doctor": ("cleanlab", "cleanvision"),
          "serve": ("gradio",)}


def require(extra, what):
    """A `CnnlabError` naming ``pip install 'cnnlab[EXTRA]'`` unless the modules of `extra` are installed
    (`what`: the command or setting that needs them)."""
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise CnnlabError(f"{what} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                          f"installed: pip install 'cnnlab[{extra}]'.")
