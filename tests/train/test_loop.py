"""The shared loop on real digits: learning, freezing, head learning rate, resume, seeds, divergence."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch

from conftest import spec_for
from hpsweep.search.space import SearchSpace
from hpsweep.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hpsweep.train.data import prepare
from hpsweep.train.device import resolve_precision
from hpsweep.train.loop import fit
from hpsweep.train.loop_api import LoopSettings
from hpsweep.train.models import build_model
from hpsweep.train.optim import LRSchedule
from hpsweep.train.trial import loop_settings, run_trial


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return prepare(spec_for(tmp_path_factory.mktemp("d"))).for_search()


def _run(tmp, data, config, epochs=3, model="mlp", **train):
    spec = spec_for(tmp, model={"name": model}, train={"epochs": epochs, **train})
    reports = []
    net, result = run_trial(spec, data, config, on_epoch=reports.append)
    return net, result, reports


def test_loss_falls_and_accuracy_rises(tmp_path, digits):
    _, result, reports = _run(tmp_path, digits, {"lr": 0.003}, epochs=4)
    losses = [r.metrics["train_loss"] for r in reports]
    assert losses[-1] < losses[0] * 0.5
    assert reports[-1].metrics["val_accuracy"] > 0.9
    assert result.status == "completed" and result.epochs_run == 4
    assert set(reports[0].metrics) >= {"val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall"}
    assert "frozen" not in reports[0].metrics  # nothing frozen: no flat line of zeros in MLflow's charts


@pytest.mark.slow
def test_cnn_reaches_95_percent_on_digits_within_10_epochs(tmp_path, digits):
    _, result, _ = _run(tmp_path, digits, {"lr": 0.003, "batch_size": 32}, epochs=10, model="cnn")
    assert result.best_value >= 0.95


def test_the_cnn_trains_in_channels_last_on_a_cpu_and_its_weights_serve_an_nchw_copy(tmp_path, digits):
    """On a CPU the built-in CNN trains in channels_last (oneDNN's faster layout for it: bench
    cpu-layout); what it learned still loads into a net built as usual and predicts the same."""
    reports = []
    net, _ = run_trial(spec_for(tmp_path, model={"name": "cnn"}, train={"epochs": 2}), digits,
                       {"lr": 0.003, "batch_size": 32}, on_epoch=reports.append, device=torch.device("cpu"))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert reports[-1].metrics["val_accuracy"] > 0.8
    fresh = build_model("cnn", digits.input_shape, 10)
    fresh.load_state_dict(net.state_dict())
    x = digits.val.x[:64].float() / 255
    fresh_convs = [m for m in fresh.modules() if isinstance(m, torch.nn.Conv2d)]  # the first is both: 1 channel
    assert not any(m.weight.is_contiguous(memory_format=torch.channels_last) for m in fresh_convs[1:])
    assert torch.allclose(fresh.eval()(x), net.eval()(x), atol=1e-4)
    mlp, _, _ = _run(tmp_path, digits, {"lr": 0.003}, epochs=1)
    assert all(p.is_contiguous() for p in mlp.parameters())


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_frozen_epochs_train_only_the_head(tmp_path, digits):
    spec = spec_for(tmp_path, model={"name": "cnn"}, train={"epochs": 3})
    params = SearchSpace.of(spec).resolve({"lr": 0.01, "freeze_epochs": 2, "batch_size": 128})
    net = build_model("cnn", digits.input_shape, 10)
    states = [(_snapshot(net.backbone), _snapshot(net.head))]
    reports = []

    def record(report):
        reports.append(report)
        states.append((_snapshot(net.backbone), _snapshot(net.head)))

    fit(net, digits, params, loop_settings(spec), on_epoch=record)
    for epoch in (1, 2):  # frozen: weights and BatchNorm statistics of the backbone stay put
        assert not _moved(states[epoch - 1][0], states[epoch][0])
        assert _moved(states[epoch - 1][1], states[epoch][1]) == set(states[0][1])
        assert reports[epoch - 1].metrics["frozen"] == 1.0
    assert _moved(states[2][0], states[3][0]) == set(states[0][0])  # unfrozen: everything moves
    assert reports[2].metrics["frozen"] == 0.0


def test_frozen_epochs_run_the_backbone_once_and_train_as_if_they_ran_it_every_batch(tmp_path, digits, monkeypatch):
    spec = spec_for(tmp_path, model={"name": "cnn"}, train={"epochs": 3})
    params = SearchSpace.of(spec).resolve({"lr": 0.01, "freeze_epochs": 2, "batch_size": 32})
    train_passes = math.ceil(len(digits.train) / 512)

    def run() -> tuple[list[dict[str, float]], list[int]]:
        torch.manual_seed(0)
        net = build_model("cnn", digits.input_shape, 10)
        batch_sizes: list[int] = []
        net.backbone.register_forward_hook(lambda module, args, out: batch_sizes.append(len(args[0])))
        reports = []
        fit(net, digits, params, loop_settings(spec), on_epoch=reports.append)
        return [r.metrics for r in reports], batch_sizes

    cached, calls = run()
    # two frozen epochs: one pass over the training split in batches of 512, then validation only
    validation = math.ceil(len(digits.val) / 256)
    assert calls[:train_passes + 2 * validation] == [512] * (train_passes - 1) + [len(digits.train) % 512 or 512] \
        + [256] * (validation - 1) + [len(digits.val) - 256 * (validation - 1)] \
        + [256] * (validation - 1) + [len(digits.val) - 256 * (validation - 1)]
    monkeypatch.setattr("hpsweep.train.loop.RESIDENT_BYTES", 0)  # features too big to keep: the backbone runs per batch
    uncached, calls = run()
    assert calls[1:3] == [32, 32]
    for a, b in zip(cached, uncached, strict=True):
        assert {k: v for k, v in a.items() if k != "epoch_time_s"} == pytest.approx(
            {k: v for k, v in b.items() if k != "epoch_time_s"}, rel=1e-4, abs=1e-5)


def test_head_gets_its_own_learning_rate(tmp_path, digits):
    spec = spec_for(tmp_path, train={"epochs": 1})
    params = SearchSpace.of(spec).resolve({"lr": 1e-7, "head_lr_multiplier": 1e5, "optimizer": "sgd"})
    net = build_model("mlp", digits.input_shape, 10)
    before_backbone, before_head = _snapshot(net.backbone), _snapshot(net.head)
    fit(net, digits, params, loop_settings(spec))

    def change(before, module):
        return max(float((before[k] - v.cpu()).abs().max()) for k, v in module.state_dict().items())

    assert change(before_head, net.head) > 1000 * change(before_backbone, net.backbone)


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, digits):
    """Dropout, augmentation, SGD momentum and a warm-up schedule all depend on restored state."""
    config = {"lr": 0.02, "dropout": 0.3, "optimizer": "sgd", "optimizer.sgd.momentum": 0.9,
              "scheduler": "step", "scheduler.step.step_size": 1, "scheduler.step.gamma": 0.7,
              "scheduler.step.warmup_epochs": 1, "batch_size": 64}
    spec = spec_for(tmp_path, model={"name": "cnn"}, train={"epochs": 4},
                    data={"augment": {"random_resized_crop": True, "horizontal_flip": True}})
    full = []

    def keep(report):
        full.append(report.metrics)
        if report.epoch == 2:
            save_checkpoint(report.state(), tmp_path / "ckpt")

    run_trial(spec, digits, config, on_epoch=keep)
    resumed = []
    _, result = run_trial(spec, digits, config, on_epoch=lambda r: resumed.append(r.metrics),
                          resume=load_checkpoint(tmp_path / "ckpt"))
    drop = ("epoch_time_s",)
    assert [{k: v for k, v in m.items() if k not in drop} for m in resumed] == \
           [{k: v for k, v in m.items() if k not in drop} for m in full[2:]]
    assert result.epochs_run == 4 and len(result.history) == 4


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path, digits):
    config = {"lr": 0.01, "dropout": 0.2}

    def metrics(seed):
        return [r.metrics["val_loss"] for r in _run(tmp_path, digits, config, epochs=2, seed=seed)[2]]

    assert metrics(3) == metrics(3)
    assert metrics(3) != metrics(4)


def test_divergence_stops_at_once_with_the_worst_value(tmp_path, digits):
    config = {"lr": 1e6, "optimizer": "sgd"}
    _, result, reports = _run(tmp_path, digits, config, epochs=5)
    assert result.status == "diverged" and result.epochs_run == 1
    assert len(reports) == 1 and reports[0].stop == "diverged"
    assert reports[0].metrics["val_accuracy"] == 0.0 and reports[0].metrics["diverged"] == 1.0
    assert all(not math.isnan(v) for v in reports[0].metrics.values())
    _, result, reports = _run(tmp_path, digits, config, epochs=5, metric="val_loss")
    assert reports[0].metrics["val_loss"] == math.inf and result.best_value == math.inf


def test_early_stopping_tracks_the_best_epoch(tmp_path, digits):
    _, result, reports = _run(tmp_path, digits, {"lr": 0.05, "optimizer": "sgd"}, epochs=30, patience=2,
                              metric="val_accuracy")
    assert result.status == "early_stopped" and result.epochs_run < 30
    best = max(r.metrics["val_accuracy"] for r in reports)
    assert result.best_value == best and reports[result.best_epoch - 1].is_best
    assert result.epochs_run - result.best_epoch == 2


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch hpsweep-pwned",))


# torch warns that the hostile file was pickled with protocol 4, before refusing it: expected here
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"model": _RunsCode(), "epoch": 1}, handle)
    with pytest.raises(CheckpointError, match="would run code"):
        load_checkpoint(path)
    assert not Path("hpsweep-pwned").exists()


def test_warmup_then_step_schedule_and_one_cycle():
    def lrs(name, params, epochs=5, steps=1):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        schedule = LRSchedule(optimizer, name, params, epochs=epochs, steps_per_epoch=steps, mode="min")
        seen = []
        for _ in range(epochs):
            for _ in range(steps):
                seen.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                schedule.after_batch()
            schedule.after_epoch(0.0)
        return seen

    assert lrs("step", {"step_size": 2, "gamma": 0.5, "warmup_epochs": 2}) == pytest.approx(
        [0.1, 0.55, 1.0, 1.0, 0.5])
    cycle = lrs("onecycle", {"max_lr_factor": 10.0, "pct_start": 0.3}, epochs=2, steps=5)
    assert max(cycle) == pytest.approx(10.0) and cycle[0] < 1.0 and cycle[-1] < 0.01


def test_cpu_trains_in_fp32_whatever_precision_asks():
    cpu = torch.device("cpu")
    assert all(resolve_precision(p, cpu) is None for p in ("auto", "fp32", "bf16", "fp16"))


def test_loop_settings_follow_the_spec(tmp_path):
    spec = spec_for(tmp_path, train={"epochs": 7, "metric": "val_loss", "patience": 2, "seed": 5})
    assert loop_settings(spec) == LoopSettings(7, (("val_loss", "min"),), 2, "auto", 5, None)  # no augmentation
    flips = spec_for(tmp_path, data={"augment": {"horizontal_flip": True}})
    assert loop_settings(flips).augment == flips.data.augment


def test_augmentation_changes_training_batches_only(tmp_path, digits):
    from hpsweep.spec.data_sources import Augment
    from hpsweep.train.batches import BatchPlan, batches

    plan = BatchPlan(True, digits.mean, digits.std, Augment(random_resized_crop=True, horizontal_flip=True),
                     torch.device("cpu"))
    plain = BatchPlan(True, digits.mean, digits.std, None, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    (augmented, *_), = [next(batches(digits.train, 64, plan, train=True, generator=generator))]
    (reference, *_), = [next(batches(digits.train, 64, plain, train=True, generator=torch.Generator().manual_seed(0)))]
    assert augmented.shape == reference.shape and not torch.allclose(augmented, reference)
    val_aug = torch.cat([x for x, *_ in batches(digits.val, 64, plan, train=False)])
    val_plain = torch.cat([x for x, *_ in batches(digits.val, 64, plain, train=False)])
    assert torch.equal(val_aug, val_plain)


@pytest.mark.parametrize("every", [3600.0, 0.0])
def test_a_trial_checkpoints_its_best_and_last_epochs_and_others_when_due(tmp_path, digits, every):
    """Between best epochs a trial checkpoints only once `checkpoint_every` has passed (0: every epoch):
    the state handed to the sweep follows that rule, and is the state of the epoch it is reported with."""
    from hpsweep.train.trainable import TrialContext

    spec = spec_for(tmp_path, model={"name": "mlp"}, train={"epochs": 8})
    sent: list[tuple[dict, dict | None]] = []
    context = TrialContext(spec, digits, lambda metrics, state: sent.append((dict(metrics), state)),
                           checkpoint_every=every)
    reports = []

    def on_epoch(report):
        reports.append(report)
        context.on_epoch(report)

    run_trial(spec, digits, {"lr": 0.3, "optimizer": "sgd"}, on_epoch=on_epoch)
    wanted = [r.is_best or r.stop is not None or every == 0 for r in reports]
    assert [state is not None for _, state in sent] == wanted
    if every:
        assert not all(wanted), "the rate chosen here should give epochs that are neither best nor last"
    for (metrics, state), report in zip(sent, reports, strict=True):
        assert metrics["hpsweep_best"] == report.is_best
        if state is not None:
            assert state["epoch"] == report.epoch and state["best_epoch"] <= report.epoch


def test_the_last_report_of_a_trial_carries_its_best_epochs_confusion_matrix(tmp_path, digits):
    """A resumed sweep takes an ended trial's matrix from Ray's last result for it when the driver died
    before the trial's end reached MLflow, so the last report must hold the best epoch's matrix even
    when that epoch was not the best."""
    from hpsweep.train.loop_api import EpochReport
    from hpsweep.train.trainable import TrialContext

    sent: list[dict] = []
    context = TrialContext(spec_for(tmp_path), digits, lambda metrics, state: sent.append(dict(metrics)))
    best, later = torch.tensor([[3, 1], [0, 4]]), torch.tensor([[2, 2], [1, 3]])
    for epoch, is_best, stop, matrix in [(1, True, None, best), (2, False, None, later),
                                         (3, False, "completed", later)]:
        context.on_epoch(EpochReport(epoch, {"val_accuracy": 0.5}, is_best, stop, dict, matrix))
    assert [m.get("hpsweep_confusion") for m in sent] == [best.tolist(), None, best.tolist()]
    assert sent[-1]["hpsweep_stop"] == "completed"
