"""Which runs are the same run: every projection of a config that cnnlab compares (`cnnlab.rundir.identity`),
and ``data.split_seed``, which makes the splits the same across seeds."""

import copy

import numpy as np
import yaml

from cnnlab import rundir
from cnnlab.config import build_config, save_config
from cnnlab.rundir import comparable, data_key, job_fingerprint, seed_group_key
from tests.conftest import TINY_EXPERIMENT


def config(**changes):
    """TINY_EXPERIMENT's resolved config as a dict, with dotted `changes` (``"data.split_seed": 3``)."""
    data = copy.deepcopy(TINY_EXPERIMENT)
    for key, value in changes.items():
        *sections, last = key.split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = value
    return build_config(data)


def test_every_projection_on_the_same_pairs_of_configs():
    """The projections side by side: what each ignores, and what each counts."""
    base = config()
    seed = config(seed=2)
    provenance = base.model_copy(update={"provenance": {"created": "2026-01-01T00:00:00"}})
    batch = config(**{"data.batch_size": 32})
    split = config(**{"data.split_seed": 5})
    lr = config(**{"training.learning_rate": 0.01})
    dump = lambda cfg: cfg.to_dict()  # noqa: E731
    # resume: the same config but provenance; a seed is another run
    assert comparable(dump(base), "interrupted") == comparable(dump(provenance), "interrupted")
    assert comparable(dump(base), "interrupted") != comparable(dump(seed), "interrupted")
    assert comparable(dump(base), "interrupted") != comparable(dump(split), "interrupted")
    # seed groups: equal but for the seed
    info = {"kind": "train"}
    assert seed_group_key(dump(base), info) == seed_group_key(dump(seed), info)
    assert seed_group_key(dump(base), info) != seed_group_key(dump(lr), info)
    assert seed_group_key(dump(base), info) != seed_group_key(dump(base), {"kind": "finetune", "base": "x"})
    assert seed_group_key({}, info) is None
    # the workers of one job share everything but where files are
    sizes = type("Data", (), {"train": [0] * 3, "val": [0], "test": None, "class_names": ["a"],
                              "input_shape": (8, 8, 1)})()
    moved = base.model_copy(update={"output_dir": "elsewhere"})
    assert job_fingerprint(base, sizes) == job_fingerprint(moved, sizes)
    assert job_fingerprint(base, sizes) != job_fingerprint(lr, sizes)
    # the splits: drawn by data.split_seed, not the seed (nor batch size); by the seed where split_seed is null
    assert data_key(base) == data_key(seed) == data_key(batch)
    assert data_key(base) != data_key(split)
    legacy, legacy_seed = config(**{"data.split_seed": None}), config(**{"data.split_seed": None}, seed=2)
    assert data_key(legacy) != data_key(legacy_seed)


def test_split_seed_draws_the_same_splits_for_every_seed():
    from cnnlab.data.pipeline import load_data

    def splits(cfg):
        data = load_data(cfg)
        return [np.sort(getattr(data, name).images.reshape(len(getattr(data, name)), -1).sum(axis=1))
                for name in ("val", "test")]

    first, second = splits(config(seed=1)), splits(config(seed=2))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    other = splits(config(seed=1, **{"data.split_seed": 9}))
    assert not np.array_equal(first[0], other[0])
    by_seed = [splits(config(seed=s, **{"data.split_seed": None})) for s in (1, 2)]
    assert not np.array_equal(by_seed[0][0], by_seed[1][0])  # null: the seed draws them, as before the key


def legacy_run(root, cfg, status="interrupted"):
    """A run folder as a version before ``data.split_seed`` wrote it (no such key in its config.yaml)."""
    run = rundir.new_run_dir(root, cfg.name)
    save_config(cfg, run / rundir.CONFIG_FILE)
    saved = yaml.safe_load((run / rundir.CONFIG_FILE).read_text())
    del saved["data"]["split_seed"]
    (run / rundir.CONFIG_FILE).write_text(yaml.safe_dump(saved))
    rundir.update_run_info(run, status=status)
    return run


def test_runs_from_before_split_seed_keep_the_splits_their_seed_drew(tmp_path):
    cfg = config(output_dir=str(tmp_path))
    run = legacy_run(tmp_path, cfg)
    assert rundir.read_config(run)["data"]["split_seed"] is None
    assert rundir.load_run_config(run).data.split_seed is None  # evaluate, finetune, report: the seed's splits
    adopted = rundir.resumable_config(cfg)
    assert adopted.data.split_seed is None  # resuming it goes on with its own images
    assert rundir.find_resumable(tmp_path, cfg.name, adopted.to_dict()) == run
    assert rundir.resumable_config(cfg, fresh=True).data.split_seed == 0


def test_a_run_of_the_current_splits_is_resumed_as_it_is(tmp_path):
    cfg = config(output_dir=str(tmp_path))
    run = rundir.new_run_dir(tmp_path, cfg.name)
    save_config(cfg, run / rundir.CONFIG_FILE)
    rundir.update_run_info(run, status="interrupted")
    assert rundir.resumable_config(cfg) is cfg
    assert rundir.find_resumable(tmp_path, cfg.name, cfg.to_dict()) == run
