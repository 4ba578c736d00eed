"""The one exception family cnnlab raises for bad input.

The CLI turns every `CnnlabError` into a single ``Error: ...`` line and exit
code 2; anything else is an unexpected failure (exit code 1).
"""

import difflib


class CnnlabError(Exception):
    """Bad usage or bad input: the message says what is wrong and what is allowed."""


class ConfigError(CnnlabError, ValueError):
    """An experiment file, a ``--set`` override or an option is wrong."""


class DataError(CnnlabError, ValueError):
    """A dataset, an image folder or a file cannot be used as asked."""


class TrainingError(CnnlabError):
    """Training could not go on (for example the loss became NaN)."""


def did_you_mean(word, choices, prefix=""):
    """Return `` Did you mean 'x'?`` for the closest of `choices` (shown after `prefix`), or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{prefix}{close[0]}'?" if close else ""


def one_of(key, choices, received):
    """Build the standard "must be one of" message (Keras's "Received:" style)."""
    allowed = ", ".join(str(c) for c in choices)
    return (
        f"`{key}` must be one of {allowed}. Received: {received!r}."
        f"{did_you_mean(received, choices)}"
    )
