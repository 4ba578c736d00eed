"""The config loader returns a valid `ExperimentConfig` or raises `ConfigError`: nothing else, whatever it reads.

Random YAML text, random YAML structures (nested mappings and lists over the
schema's own keys and the catalog's names), random bytes and random ``--set``
strings go through `read_yaml`, `apply_overrides`, `build_config` and
`load_config`. In CI the examples are derandomized and few enough to stay under
~30 s; ``CNNLAB_FUZZ_EXAMPLES=10000`` runs a long, random session locally.
"""

import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab import catalog
from cnnlab.config import ExperimentConfig, Section, apply_overrides, build_config, load_config, read_yaml
from cnnlab.errors import ConfigError

EXAMPLES = int(os.environ.get("CNNLAB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="CNNLAB_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
WORKDIR = Path(tempfile.mkdtemp(prefix="cnnlab-fuzz-"))


def _schema_keys():
    keys = set(ExperimentConfig.model_fields)
    for section in Section.__subclasses__():
        keys |= set(section.model_fields)
    return sorted(keys)


KEYS = _schema_keys() + ["name", "momentum", "milestones", "beta_1", "Model", "A", "x", ""]
NAMES = sorted({*catalog.ARCHITECTURES, *catalog.DATASETS, *catalog.OPTIMIZERS, *catalog.SCHEDULES,
                *catalog.SCALINGS, *catalog.ENGINES, "val_loss", "val_accuracy", "balanced", "imagenet", "..",
                "../x", "/tmp", "he_normal", "relu"})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES), st.text(max_size=12))
keys = st.one_of(st.sampled_from(KEYS), st.integers(-3, 200), st.none(), st.booleans(), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=5)), max_leaves=25)
documents = st.dictionaries(keys, values, max_size=8)

# Text that YAML finds meaningful: indicators, anchors, aliases, tags, flow collections.
YAML_ALPHABET = ":-[]{}&*!|>'\"#%@?,. \n\t" + "abcxyz019_" + "é\x00\x85\u2028"
yaml_text = st.one_of(st.text(alphabet=YAML_ALPHABET, max_size=80), st.text(max_size=60))
dotted = st.lists(st.sampled_from(KEYS + ["", " ", "optimizer", "lr_schedule"]), min_size=0, max_size=4).map(".".join)
set_strings = st.one_of(
    st.tuples(dotted, st.sampled_from(["=", "", "=="]), yaml_text).map("".join),
    st.tuples(dotted, values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip())).map("=".join),
    st.text(max_size=30))

BASE = {"name": "fuzz", "data": {"dataset": "digits"}}


def valid_or_config_error(load):
    """Run `load`; it must return an ExperimentConfig or raise ConfigError."""
    try:
        result = load()
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(str(exc))
        return None
    assert isinstance(result, ExperimentConfig), type(result)
    return result


def _write(content, name="fuzz.yaml"):
    path = WORKDIR / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8",
                                                                                   errors="surrogatepass")
    return path


@FUZZ
@given(text=yaml_text, overrides=st.lists(set_strings, max_size=3))
def test_random_yaml_text_and_set_strings(text, overrides):
    try:
        path = _write(text)
    except UnicodeEncodeError:
        return
    valid_or_config_error(lambda: load_config(path, overrides))


@FUZZ
@given(document=documents, overrides=st.lists(set_strings, max_size=3))
def test_random_structures_as_files(document, overrides):
    path = _write(yaml.safe_dump({**BASE, **document}, allow_unicode=True))
    valid_or_config_error(lambda: load_config(path, overrides))


@FUZZ
@given(document=documents)
def test_random_structures_as_dicts(document):
    valid_or_config_error(lambda: build_config({**BASE, **document}))


@FUZZ
@given(edits=st.lists(st.tuples(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3), values), max_size=4))
def test_random_edits_of_a_valid_config(edits):
    """Small changes at real keys reach the deeper checks (sections, optimizer arguments, monitors...)."""
    overrides = [f"{'.'.join(path)}={yaml.safe_dump(value, default_flow_style=True).strip()}" for path, value in edits]
    valid_or_config_error(lambda: build_config(apply_overrides(BASE, overrides)))


@FUZZ
@given(content=st.binary(max_size=120))
def test_random_bytes(content):
    path = _write(content, "bytes.yaml")
    valid_or_config_error(lambda: build_config(read_yaml(path)))


def test_the_issue_cases_are_config_errors():
    """The crashes issue 8 found, each now a ConfigError."""
    for text in ("training: fast", "training: [1, 2]", "? [1]\n: 2", "Model:\n  architecture: mlp", "x: &x [*x]",
                 "seed: -1", "training: true", "A:", "data: &d {dataset: digits, path: *d}"):
        path = _write(text)
        assert valid_or_config_error(lambda path=path: load_config(path)) is None, text
    base = _write("data: {dataset: digits}")
    for item in ("training=5", "name={[1]: 2}"):
        assert valid_or_config_error(lambda item=item: load_config(base, [item])) is None, item
