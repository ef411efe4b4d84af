"""Checkpoints of the learned models: what loads, what is refused and why; the model runner's device checks."""
import pickle

import pytest
import torch

from detector2d_data import TINY
from perception3d.core.models.centernet import CenterNet
from perception3d.core.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from perception3d.core.models.options import RunnerOptions
from perception3d.core.models.runner import TorchRunner, resolve_device
from perception3d.core.models.shipped import SHIPPED_CHECKPOINT
from perception3d.errors import ConfigError, ModelError
from perception3d.nodes.detector2d import Detector2DNode
from test_detector2d_node import params


class _WritesAFile:
    """Unpickling this calls exec(), which writes `path`: what a malicious checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('pwned')",)


def _payload(tmp_path):
    save_checkpoint(tmp_path / "good.pt", CenterNet(TINY))
    return torch.load(tmp_path / "good.pt", weights_only=True)


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned.txt"
    payload = _payload(tmp_path)
    payload["record"] = {"note": _WritesAFile(marker)}
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="refused: it holds Python objects"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="refused"):
        Detector2DNode(params(tmp_path / "evil.pt"))
    assert not marker.exists()
    # the file really is malicious: an unsafe load would have run it
    with open(tmp_path / "evil.pt", "rb"):
        torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.read_text() == "pwned"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_plain_pickle_is_not_a_checkpoint(tmp_path):
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"format": "perception3d.checkpoint"}, f)
    with pytest.raises(ModelError, match="cannot be read"):
        load_checkpoint(tmp_path / "plain.pkl")


def test_a_checkpoint_of_another_model_or_an_unknown_model_is_refused(tmp_path):
    payload = _payload(tmp_path)
    torch.save({**payload, "model": "segmentation"}, tmp_path / "seg.pt")
    with pytest.raises(ModelError, match="is a checkpoint of model 'segmentation'.*expected a detector2d checkpoint"):
        load_checkpoint(tmp_path / "seg.pt")
    torch.save({**payload, "model": "lane_detector"}, tmp_path / "lanes.pt")
    with pytest.raises(ModelError, match="'lane_detector' is not a perception3d model"):
        load_checkpoint(tmp_path / "lanes.pt", expected_model="lane_detector")


def test_wrong_classes_or_architecture_name_what_differs(tmp_path):
    payload = _payload(tmp_path)
    torch.save({**payload, "config": {**payload["config"], "neck_channels": 32}}, tmp_path / "arch.pt")
    with pytest.raises(ModelError, match="weights do not fit the architecture"):
        load_checkpoint(tmp_path / "arch.pt")
    with pytest.raises(ModelError, match=r"trained for classes \['car', 'truck'.*expected classes \['car'\]"):
        load_checkpoint(tmp_path / "good.pt", expected_classes=["car"])
    torch.save({**payload, "version": 3}, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="checkpoint version 3"):
        load_checkpoint(tmp_path / "future.pt")


def test_version_one_files_of_train_detector2d_still_load(tmp_path):
    model = CenterNet(TINY)
    torch.save({"format": "perception3d.centernet2d", "version": 1, "config": TINY.to_dict(),
                "state_dict": model.state_dict(), "train_state": {"epoch": 3}}, tmp_path / "v1.pt")
    loaded, state = load_checkpoint(tmp_path / "v1.pt")
    assert state == {"epoch": 3}
    assert torch.equal(loaded.state_dict()["heatmap.2.weight"], model.state_dict()["heatmap.2.weight"])


def test_records_are_stored_as_plain_data(tmp_path):
    import numpy as np

    save_checkpoint(tmp_path / "r.pt", CenterNet(TINY), record={"metrics": {"car": np.float64(0.5)}, "n": (1, 2)})
    record = read_checkpoint(tmp_path / "r.pt")["record"]
    assert record == {"metrics": {"car": 0.5}, "n": [1, 2]} and type(record["metrics"]["car"]) is float
    with pytest.raises(TypeError, match="not plain data"):
        save_checkpoint(tmp_path / "bad.pt", CenterNet(TINY), record={"x": object()})


def test_the_shipped_checkpoint_carries_its_training_record():
    payload = read_checkpoint(SHIPPED_CHECKPOINT)
    assert payload["model"] == "detector2d" and len(payload["class_names"]) == 10
    assert payload["record"]["command"].startswith("perception3d train detector2d")
    assert all(v.dtype == torch.float16 for v in payload["state_dict"].values() if v.is_floating_point())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")
def test_devices_and_precisions_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA device"):
        TorchRunner(CenterNet(TINY), RunnerOptions("cpu", "fp16"))
    with pytest.raises(ConfigError, match="precision 'int8'"):
        RunnerOptions("cpu", "int8")
