"""The CenterNet model, its training loop, checkpoints and the ONNX backend, on tiny synthetic images."""
import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from detector2d_data import TINY, rectangle_image
from perception3d.core.boxes import iou_2d
from perception3d.core.classes import DETECTION_CLASSES
from perception3d.core.models.centernet import CenterNet, CenterNetConfig
from perception3d.core.models.checkpoint import load_checkpoint, save_checkpoint
from perception3d.core.models.decode import DecodeParams
from perception3d.core.models.export import export_onnx
from perception3d.core.models.inference import TorchDetector2D
from perception3d.core.models.onnx_backend import OnnxDetector2D
from perception3d.core.models.options import RunnerOptions
from perception3d.errors import ConfigError, ImageError, ModelError
from perception3d.eval.backend_agreement import compare_detections
from perception3d.train.detector2d import Detector2DData, initialised_from, train_detector2d
from perception3d.train.trainer import TrainConfig

torch.set_num_threads(1)
CPU = RunnerOptions("cpu")
PLAIN = Detector2DData(augment=None)  # letterboxing only


@pytest.fixture(scope="session")
def overfit(tmp_path_factory):
    """A tiny model trained for 60 steps on 4 images of drawn rectangles (about 4 s on one core)."""
    rng = np.random.default_rng(0)
    data = [rectangle_image(rng) for _ in range(4)]
    path = tmp_path_factory.mktemp("det2d") / "overfit.pt"
    config = TrainConfig(epochs=60, batch_size=4, lr=3e-3, device="cpu", checkpoint_every=0)
    result = train_detector2d(data, path, TINY, config, val_set=data, progress=False, data=PLAIN)
    return data, path, result


def test_head_shapes_and_focal_init():
    model = CenterNet(TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 128))
    assert out["heatmap"].shape == (2, 10, 16, 32)
    assert out["size"].shape == out["offset"].shape == (2, 2, 16, 32)
    assert torch.sigmoid(out["heatmap"]).mean().item() == pytest.approx(0.1, abs=0.03)


def test_config_rejects_input_not_multiple_of_32():
    with pytest.raises(ConfigError, match="multiple of 32"):
        CenterNetConfig(input_width=700)


def test_overfit_recovers_drawn_boxes(overfit):
    data, path, result = overfit
    assert result.steps == 60
    assert result.metrics["mean_ap"] == pytest.approx(1.0)
    detections = TorchDetector2D.from_checkpoint(path, "cpu").detect([image for image, _ in data])
    for dets, (_, gt) in zip(detections, data):
        assert len(dets) == len(gt)  # default threshold 0.3: no spurious boxes
        iou = iou_2d(gt.boxes_xyxy, dets.boxes_xyxy)
        best = iou.argmax(1)
        assert iou.max(1).min() > 0.7
        assert list(dets.class_ids[best]) == list(gt.class_ids)


def test_onnx_export_gives_the_same_detections(overfit, tmp_path):
    data, path, _ = overfit
    model, _ = load_checkpoint(path)
    onnx_path = export_onnx(model, tmp_path / "tiny.onnx")
    params = DecodeParams(score_threshold=0.1)
    torch_detector = TorchDetector2D(model, "cpu", params)
    onnx_detector = OnnxDetector2D(onnx_path, params=params, options=RunnerOptions("cpu", threads=1))
    assert onnx_detector.class_names == DETECTION_CLASSES
    assert (onnx_detector.input_width, onnx_detector.input_height) == (128, 64)
    rng = np.random.default_rng(7)
    images = [image for image, _ in data] + [rectangle_image(rng)[0] for _ in range(4)]
    from_torch, from_onnx = torch_detector.detect(images), onnx_detector.detect(images)
    agreement = compare_detections(from_torch, from_onnx, min_iou=0.99)
    assert agreement.all_agree and agreement.matched == agreement.count_a == agreement.count_b >= len(images)
    assert agreement.max_score_difference < 1e-4


def test_resume_continues_from_checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    data = [rectangle_image(rng) for _ in range(2)]
    path = tmp_path / "resume.pt"
    config = TrainConfig(epochs=1, batch_size=2, device="cpu", checkpoint_every=0)
    first = train_detector2d(data, path, TINY, config, progress=False, data=PLAIN)
    _, state = load_checkpoint(path)
    assert first.steps == 1 and state["epoch"] == 1 and state["step"] == 1
    assert "optimizer" not in state  # a finished run ships weights only, as float16
    stored = torch.load(path, weights_only=False)["state_dict"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert next(load_checkpoint(path)[0].parameters()).dtype == torch.float32

    class Interrupted(list):
        """The two images, interrupted (like Ctrl-C) when the third one is loaded."""

        loads = 0

        def __getitem__(self, index):
            self.loads += 1
            if self.loads == 3:
                raise KeyboardInterrupt
            return super().__getitem__(index)

    mid = tmp_path / "mid.pt"
    two_epochs = TrainConfig(epochs=2, batch_size=1, device="cpu", checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        train_detector2d(Interrupted(data), mid, TINY, two_epochs, progress=False, data=PLAIN)
    _, state = load_checkpoint(mid)
    assert (state["epoch"], state["step"]) == (1, 2) and "optimizer" in state  # epoch 1 done, mid-run state
    assert train_detector2d(data, mid, TINY, two_epochs, resume=True, progress=False, data=PLAIN).steps == 4
    resumed = train_detector2d(data, path, TINY, TrainConfig(epochs=3, batch_size=2, device="cpu"),
                               resume=True, progress=False, data=PLAIN)
    assert resumed.steps == 3
    with pytest.raises(ModelError, match="architecture"):
        train_detector2d(data, path, CenterNetConfig(**{**TINY.to_dict(), "width": 16}), config, resume=True,
                         progress=False, data=PLAIN)


def test_init_fine_tunes_from_another_checkpoint(overfit, tmp_path):
    """A run with `init` starts from that checkpoint's weights (not a fresh initialisation) and records it."""
    data, overfit_path, _ = overfit
    frozen = TrainConfig(epochs=1, batch_size=2, lr=0.0, device="cpu", checkpoint_every=0)
    fine = train_detector2d(data, tmp_path / "fine.pt", TINY, frozen, init=overfit_path, progress=False, data=PLAIN)
    fresh = train_detector2d(data, tmp_path / "fresh.pt", TINY, frozen, progress=False, data=PLAIN)
    assert fine.steps == 2  # a new schedule, not the 60 steps of the init run
    start, _ = load_checkpoint(overfit_path)
    tuned, state = load_checkpoint(fine.checkpoint)
    untuned, _ = load_checkpoint(fresh.checkpoint)
    assert state["init"] == str(overfit_path) and state["epoch"] == 1
    weight = "heatmap.2.weight"  # learning rate 0: the weights stay where the run started
    assert torch.equal(tuned.state_dict()[weight], start.state_dict()[weight])
    assert not torch.equal(untuned.state_dict()[weight], start.state_dict()[weight])
    with pytest.raises(ModelError, match="architecture"):
        train_detector2d(data, tmp_path / "wide.pt", CenterNetConfig(**{**TINY.to_dict(), "width": 16}), frozen,
                         init=overfit_path, progress=False, data=PLAIN)


def test_context_blocks_widen_a_checkpoint_without_changing_its_output(overfit):
    """Context blocks start as the identity: a model widened from a checkpoint computes what the checkpoint did."""
    data, overfit_path, _ = overfit
    source, _ = load_checkpoint(overfit_path)
    widened_config = CenterNetConfig(**{**TINY.to_dict(), "context_dilations": [2, 4]})
    widened = initialised_from(overfit_path, widened_config).eval()
    assert len(widened.backbone.context) == 2
    images = torch.rand(2, 3, TINY.input_height, TINY.input_width)
    with torch.inference_mode():
        before, after = source(images), widened(images)
    for head in ("heatmap", "size", "offset"):
        torch.testing.assert_close(after[head], before[head])
    save_checkpoint(overfit_path.parent / "widened.pt", widened)
    reloaded, _ = load_checkpoint(overfit_path.parent / "widened.pt")
    assert reloaded.config.context_dilations == (2, 4)
    with pytest.raises(ModelError, match="architecture"):
        initialised_from(overfit_path, CenterNetConfig(**{**TINY.to_dict(), "width": 16, "context_dilations": [2]}))


def test_checkpoint_of_wrong_architecture_or_classes_is_rejected(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, CenterNet(TINY))
    payload = torch.load(path, weights_only=False)
    payload["config"]["width"] = 16  # weights no longer fit the config
    torch.save(payload, tmp_path / "wrong_arch.pt")
    with pytest.raises(ModelError, match="weights do not fit"):
        load_checkpoint(tmp_path / "wrong_arch.pt")
    save_checkpoint(tmp_path / "two.pt", CenterNet(CenterNetConfig(**{**TINY.to_dict(),
                                                                      "class_names": ["car", "pedestrian"]})))
    with pytest.raises(ModelError, match="trained for classes"):
        TorchDetector2D.from_checkpoint(tmp_path / "two.pt", "cpu")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a perception3d checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_bad_image_gives_image_error():
    detector = TorchDetector2D(CenterNet(TINY), "cpu")
    with pytest.raises(ImageError, match="CAM_FRONT"):
        detector.detect([np.zeros((64, 128), np.uint8)], frame_ids=["CAM_FRONT"])


class _Heads(nn.Module):
    """A stand-in ONNX detector with configurable heads, to break the contract in one way at a time."""

    def __init__(self, classes=10, size_channels=2, offset_rank4=True):
        super().__init__()
        self.heat = nn.Conv2d(3, classes, 4, 4)
        self.size = nn.Conv2d(3, size_channels, 4, 4)
        self.offset = nn.Conv2d(3, 2, 4, 4)
        self.offset_rank4 = offset_rank4

    def forward(self, x):
        offset = self.offset(x)
        return torch.sigmoid(self.heat(x)), self.size(x), offset if self.offset_rank4 else offset.flatten(2)


def _export(module, path, input_name="image", outputs=("heatmap", "size", "offset"), classes=DETECTION_CLASSES):
    torch.onnx.export(module.eval(), (torch.zeros(1, 3, 64, 128),), str(path), input_names=[input_name],
                      output_names=list(outputs), opset_version=17, dynamo=False)
    if classes is not None:
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "class_names", json.dumps(list(classes))
        onnx.save(proto, str(path))
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter warns about itself
def test_onnx_contract_violations_are_rejected(tmp_path):
    good = OnnxDetector2D(_export(_Heads(), tmp_path / "good.onnx"), options=RunnerOptions("cpu", threads=1))
    assert good.class_names == DETECTION_CLASSES and good.fixed_batch == 1
    # a fixed-batch model runs a six-image batch in chunks, giving what it gives image by image
    batch = np.random.default_rng(0).random((6, 3, 64, 128), dtype=np.float32)
    heads = good.heads(batch)
    assert heads[0].shape == (6, 10, 16, 32)
    assert np.allclose(heads[1][4:5], good.heads(batch[4:5])[1])
    cases = [
        (_export(_Heads(), tmp_path / "name.onnx", input_name="input"), "inputs \\['input'\\]"),
        (_export(_Heads(), tmp_path / "outs.onnx", outputs=("heatmap", "size", "centre")), "lack \\['offset'\\]"),
        (_export(_Heads(classes=3), tmp_path / "classes.onnx"), "heatmap has 3 channels"),
        (_export(_Heads(size_channels=4), tmp_path / "size.onnx"), "output 'size' has 4 channels"),
        (_export(_Heads(offset_rank4=False), tmp_path / "rank.onnx"), "output 'offset'"),
        (_export(_Heads(), tmp_path / "nometa.onnx", classes=None), "no 'class_names' metadata"),
    ]
    for path, message in cases:
        with pytest.raises(ModelError, match=message):
            OnnxDetector2D(path, options=RunnerOptions("cpu", threads=1))
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        OnnxDetector2D(tmp_path / "junk.onnx")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_command_writes_a_contract_model(overfit, tmp_path, capsys):
    from perception3d.cli import main

    _, path, _ = overfit
    assert main(["export", "detector2d", "--checkpoint", str(path), "--out", str(tmp_path / "m.onnx")]) == 0
    assert OnnxDetector2D(tmp_path / "m.onnx").class_names == DETECTION_CLASSES
    assert main(["export", "detector2d", "--checkpoint", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "x")]) == 2
    assert "cannot be read as a torch checkpoint" in capsys.readouterr().err


def test_train_command_names_what_is_missing(tmp_path, capsys):
    from perception3d.cli import main

    code = main(["train", "detector2d", "--dataroot", str(tmp_path), "--version", "v1.0-synth", "--split", "train",
                 "--out", str(tmp_path / "c.pt")])
    assert code == 2
    assert f"{tmp_path}/v1.0-synth: no table directory for version 'v1.0-synth'" in capsys.readouterr().err


def test_training_crops_have_matching_targets():
    from perception3d.train.augment import AugmentConfig
    from perception3d.train.detector2d import CenterNetSamples

    data = [rectangle_image(np.random.default_rng(2))]
    sample = CenterNetSamples(data, TINY, AugmentConfig(), crop_size=(64, 32))[0]
    assert sample["image"].shape == (3, 32, 64)
    assert sample["heatmap"].shape == (10, 8, 16) and sample["mask"].shape == (8, 16)
    # every regression cell is a heatmap peak of value 1 in some class
    assert np.all(sample["heatmap"].amax(0).numpy()[sample["mask"].numpy() > 0] == 1.0)
    with pytest.raises(ConfigError, match="training crop 70x32"):
        CenterNetSamples(data, TINY, AugmentConfig(), crop_size=(70, 32))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_open_detector2d_by_backend_name(overfit, tmp_path):
    from perception3d.core.models.backends import open_detector2d

    data, path, _ = overfit
    from_torch = open_detector2d("torch", path, CPU)
    model, _ = load_checkpoint(path)
    onnx_model = open_detector2d("onnx", export_onnx(model, tmp_path / "m.onnx"), CPU)
    images = [image for image, _ in data]
    assert compare_detections(from_torch.detect(images), onnx_model.detect(images)).all_agree
    with pytest.raises(ModelError, match="trained for classes"):
        open_detector2d("torch", path, CPU, class_names=["car"])
    with pytest.raises(ConfigError, match="backend 'yolo'"):
        open_detector2d("yolo", path)
