"""Trackers with fake clients (the real W&B / MLflow / TensorBoard need packages or network):
each receives every numeric record of metrics.jsonl at its step, a resumed run continues the same
tracker run, and a missing package is a one-line error before training."""

from __future__ import annotations

import json
import sys
import types

import pytest
from tests.helpers.train import tiny_trainer


class Calls(list):
    def __call__(self, name):
        return lambda *a, **k: self.append((name, a, k))


def _fakes(monkeypatch):
    calls = Calls()

    class Run:
        def log(self, data, step):
            calls.append(("wandb.log", dict(data), step))

        def finish(self):
            calls.append(("wandb.finish",))

    wandb = types.ModuleType("wandb")
    wandb.util = types.SimpleNamespace(generate_id=lambda: "run123")

    def init(**kw):
        calls.append(("wandb.init", kw))
        return Run()

    wandb.init = init
    mlflow = types.ModuleType("mlflow")
    mlflow.set_tracking_uri = lambda uri: calls.append(("mlflow.uri", uri))

    def start_run(run_id=None, run_name=None):
        calls.append(("mlflow.start", run_id, run_name))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id or "ml42"))

    mlflow.start_run = start_run
    mlflow.log_params = lambda p: calls.append(("mlflow.params", dict(p)))
    mlflow.log_metrics = lambda m, step: calls.append(("mlflow.log", dict(m), step))
    mlflow.end_run = lambda: calls.append(("mlflow.end",))
    tb = types.ModuleType("torch.utils.tensorboard")

    class SummaryWriter:
        def __init__(self, logdir):
            calls.append(("tb.open", logdir))

        def add_scalar(self, k, v, step):
            calls.append(("tb.scalar", k, v, step))

        def close(self):
            calls.append(("tb.close",))

    tb.SummaryWriter = SummaryWriter
    for name, mod in (("wandb", wandb), ("mlflow", mlflow), ("torch.utils.tensorboard", tb)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_every_tracker_gets_the_records_and_a_resume_continues_its_run(tmp_path, monkeypatch):
    calls = _fakes(monkeypatch)
    sets = {"trackers": ["wandb", "mlflow", "tensorboard"], "ckpt_every": 0, "eval.every": 2}
    tiny_trainer(tmp_path, 4, joint=False, **sets).fit(stop_after=2)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    init = next(c for c in calls if c[0] == "wandb.init")[1]
    assert init["id"] == "run123" and init["config"]["optim"]["lr"] == 1e-3 and init["resume"] == "allow"
    assert ("mlflow.start", None, tmp_path.name) in calls
    params = next(c for c in calls if c[0] == "mlflow.params")[1]
    assert params["optim.lr"] == "0.001" and params["trackers"] == json.dumps(sets["trackers"])
    wandb_logs = [(c[1], c[2]) for c in calls if c[0] == "wandb.log"]
    ml_logs = [(c[1], c[2]) for c in calls if c[0] == "mlflow.log"]
    expected = [({k: float(v) for k, v in r.items() if k != "step" and isinstance(v, (int, float))}, r["step"])
                for r in records]
    assert wandb_logs == expected and ml_logs == expected and any("val/video/top1" in m for m, _ in expected)
    tb_loss = [(c[2], c[3]) for c in calls if c[0] == "tb.scalar" and c[1] == "loss/video"]
    assert tb_loss == [(r["loss/video"], r["step"]) for r in records if "loss/video" in r]
    assert {"wandb.finish", "mlflow.end", "tb.close"} <= {c[0] for c in calls}

    calls.clear()
    tiny_trainer(tmp_path, 4, joint=False, **sets).fit()  # resumes at step 2
    assert next(c for c in calls if c[0] == "wandb.init")[1]["id"] == "run123"
    assert ("mlflow.start", "ml42", None) in calls  # the same MLflow run, parameters not re-logged
    assert not any(c[0] == "mlflow.params" for c in calls)
    assert min(c[2] for c in calls if c[0] == "wandb.log") > 2


def test_a_missing_tracker_package_is_a_one_line_error_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ValueError, match=r"tracker 'wandb' is configured but wandb is not installed; pip install"):
        tiny_trainer(tmp_path, 2, joint=False, trackers=["wandb"])
    assert not (tmp_path / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match="unknown tracker"):
        tiny_trainer(tmp_path, 2, joint=False, trackers=["comet"])
