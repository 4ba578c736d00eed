"""Which runs are the same run: every projection of a run's config that cnnlab compares, in one place.

- `comparable`: what makes an interrupted run resumable by a command, or a completed seed done;
- `SEED_FREE_KEYS` / `seed_group_key`: runs equal but for these form a seed group (`cnnlab runs`);
- `job_fingerprint`: what every worker of one training job must share;
- `data_key`: what decides a run's splits (an ensemble loads each distinct data once).
"""

import json


# Config sections that say how a run was made or reported, not what it learns.
NOT_LEARNED = ("provenance", "distribution", "tune", "tracking")


def comparable(config_dict, wanted):
    """What makes two runs the same: not their provenance, the search section (``tune``), where they are
    tracked, how many processes trained them (`NOT_LEARNED`), nor how many batches went into one compiled
    call; and to resume a run (`wanted` "interrupted"), not which kernels either (the same results to float
    rounding), while a completed run counts only for its own kernels. Paths count by the file they name,
    however spelt (`cnnlab.config.absolute_paths`)."""
    from cnnlab.config import absolute_paths

    out = {k: v for k, v in absolute_paths(config_dict).items() if k not in NOT_LEARNED}
    runtime = {"fast_kernels": False, **out.get("runtime", {})}  # runs from before the key ran Keras's layers
    runtime.pop("steps_per_execution", None)
    if wanted == "interrupted":
        runtime.pop("fast_kernels")
    out["runtime"] = runtime
    return out


# Config keys that do not change what a run learns: runs of one name equal but for these form a seed group.
SEED_FREE_KEYS = ("seed", "provenance", "output_dir", "tune", "tracking")


def seed_group_key(config, info):
    """The key that puts a run (its config dict and run.json `info`) in a seed group; None without a config."""
    if not config:
        return None
    key = {k: v for k, v in config.items() if k not in SEED_FREE_KEYS}
    key.update(kind=info.get("kind"), base=info.get("base"))
    return json.dumps(key, sort_keys=True, default=str)


def job_fingerprint(cfg, data):
    """What every worker of a job must share: the config but where files are, the classes, the splits' sizes."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("output_dir", *NOT_LEARNED)}
    config["data"] = {k: v for k, v in config["data"].items() if k not in ("path", "test_path")}
    sizes = [len(e) if e is not None else 0 for e in (data.train, data.val, data.test)]
    return {"config": config, "classes": data.class_names, "sizes": sizes, "shape": list(data.input_shape)}


def data_key(cfg):
    """What decides a run's splits: its data section (but the batch size and scaling), and its seed where
    ``data.split_seed`` is null (the seed then draws the splits)."""
    data = {k: v for k, v in cfg.data.model_dump(mode="json").items() if k not in ("batch_size", "scaling")}
    return json.dumps(data, sort_keys=True), cfg.seed if cfg.data.split_seed is None else None
