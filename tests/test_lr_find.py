"""`cnnlab lr-find`: the learning-rate range test on a tiny experiment, and its suggestion rules on made-up curves."""

import json
import math

import numpy as np
import pytest

from cnnlab.commands.lr_find import DIVERGED, longest_valley, smooth, suggest
from tests.conftest import error_line


def test_smoothing_is_fastai_bias_corrected_average():
    assert smooth([2.0]) == pytest.approx([2.0])  # bias correction: the first value is itself
    assert smooth([1.0] * 50) == pytest.approx([1.0] * 50)


def test_the_rates_read_off_a_valley_shaped_curve():
    rates = np.logspace(-6, 1, 200)
    x = np.log10(rates)
    losses = 2.3 - 1.5 / (1 + np.exp(-4 * (x + 3))) + np.where(x > -1, 3 * (x + 1) ** 2, 0)  # falls around 1e-3
    result = suggest(rates, list(losses))
    assert 3e-4 < result.steepest < 3e-3  # the fall is steepest near 1e-3 (the smoothing lags it a little)
    low = rates[int(np.argmin(result.smoothed[20:195])) + 20]
    assert result.minimum_tenth == pytest.approx(low / 10)
    assert 1e-5 < result.valley < low  # part-way down the valley
    assert result.suggestion == result.valley


def test_the_longest_valley_is_fastai_s():
    # the longest decreasing run is 9, 8, 7, 5, 3, 2, 1 (7 values, ending at index 9); fastai takes
    # start = 9 - 7 = 2, then start + int(7 / 3) + int(7 / 3 / 2) = 5
    assert longest_valley([5, 9, 8, 7, 8, 5, 6, 3, 2, 1, 4]) == 5
    assert longest_valley([1, 2, 3, 4]) is None


def test_a_flat_or_rising_curve_has_no_steepest_descent_or_valley():
    rates = np.logspace(-6, 1, 50)
    result = suggest(rates, list(np.linspace(1.0, 3.0, 50)))
    assert result.steepest is None and result.valley is None
    assert result.suggestion == pytest.approx(rates[5] / 10)  # the search leaves out the first tenth


def test_lr_find_sweeps_plots_and_suggests(cli, write_experiment, tmp_path):
    experiment = write_experiment({"augmentation": {"rotation_range": 5}})
    plot = tmp_path / "sweep.png"
    result = cli("lr-find", experiment, "--steps", 40, "--start", 1e-5, "--end", 10, "-o", plot, "--json")
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.output)
    rates = sweep["rates"]
    assert rates[0] == pytest.approx(1e-5)
    assert all(b > a for a, b in zip(rates, rates[1:]))
    assert 5 <= len(sweep["losses"]) <= 40 and all(math.isfinite(v) for v in sweep["losses"])
    if len(rates) < 40:  # it stopped early: only because the loss diverged
        assert max(sweep["smoothed"]) > DIVERGED * min(sweep["smoothed"]) * 0.99
    assert sweep["suggestion"] is not None and rates[0] <= sweep["suggestion"] <= rates[-1]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "runs").exists()  # a sweep is not a run


def test_lr_find_says_the_rate_to_use(cli, write_experiment, tmp_path):
    result = cli("lr-find", write_experiment(), "--steps", 60, "--start", 1e-5, "-o", tmp_path / "lr.png")
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Wrote {tmp_path / 'lr.png'}. Suggested learning rate: ")
    rate = last.split("--set training.learning_rate=")[1]
    assert 1e-5 < float(rate) < 10


def test_a_loss_that_is_nan_from_the_start_is_one_error(cli, write_experiment, monkeypatch, tmp_path):
    from cnnlab.commands import lr_find as module

    monkeypatch.chdir(tmp_path)  # the default -o lr_find.png would land here

    original = module._sweep_callback

    def nan_sweep(rates):  # the model's loss is NaN at every step, as with unscaled data gone wrong
        sweep = original(rates)
        record = sweep.on_epoch_end
        sweep.on_epoch_end = lambda epoch, logs=None: record(epoch, {"loss": float("nan")})
        return sweep

    monkeypatch.setattr(module, "_sweep_callback", nan_sweep)
    result = cli("lr-find", write_experiment(), "--steps", 10)
    assert result.exit_code == 2
    assert "the loss was not finite at the first learning rate, --start 1e-07 (received nan)" in error_line(result)
    assert not (tmp_path / "lr_find.png").exists()


@pytest.mark.parametrize("args, says", [(("--start", "1", "--end", "0.1"), "--start must be below --end"),
                                        (("--steps", "2"), "--steps")])
def test_bad_sweeps_are_one_error_line(cli, write_experiment, args, says):
    result = cli("lr-find", write_experiment(), *args)
    assert result.exit_code == 2
    assert says in error_line(result)


def test_a_config_typo_is_reported_before_any_sweep(cli, write_experiment):
    result = cli("lr-find", write_experiment({"training": {"learning_rat": 0.1}}))
    assert result.exit_code == 2
    assert "learning_rat" in error_line(result)
