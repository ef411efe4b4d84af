"""The shipped checkpoint (core/models/weights/detector2d_synth.pt) on a scene of a seed training never saw, and its
ONNX export.

Measured when it was shipped (benchmarks/results/detector2d_training.md): car AP@0.5 0.626 on the training
dataroot's held-out val scene, 0.425 on this fresh-seed scene. Issue 6 asks for >= 0.6; the bound below is a
regression guard for the checkpoint as shipped, not that target, which it does not yet meet on unseen seeds.
"""
import pytest

from perception3d.core.models.backends import open_detector2d
from perception3d.core.models.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from perception3d.core.models.export import export_onnx
from perception3d.data.synth import SynthConfig, synthesize
from perception3d.eval.backend_agreement import compare_detections
from perception3d.eval.map2d import AveragePrecision2D
from perception3d.train.nuscenes_boxes import NuScenesCameraBoxes

VAL_SEED = 99  # the shipped checkpoint was trained on seed-11 scenes


@pytest.fixture(scope="module")
def val_images(tmp_path_factory):
    root = synthesize(tmp_path_factory.mktemp("det2d_val") / "root", SynthConfig(scenes=1, seconds=4.0, seed=VAL_SEED),
                      progress=False)
    dataset = NuScenesCameraBoxes(root, "v1.0-synth", "synth_val")
    return [dataset[i] for i in range(len(dataset))]


def test_shipped_checkpoint_finds_cars(val_images):
    detector = open_detector2d("builtin", SHIPPED_CHECKPOINT, "cpu")
    ap = AveragePrecision2D(detector.class_names)
    for start in range(0, len(val_images), 6):
        batch = val_images[start:start + 6]
        for dets, (_, truth) in zip(detector.detect([image for image, _ in batch]), batch):
            ap.add(dets, truth)
    assert ap.num_ground_truth["car"] >= 20
    assert ap.per_class()["car"] >= 0.35


def test_onnx_export_of_the_shipped_model_gives_the_same_detections(val_images, tmp_path):
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    onnx_path = export_onnx(model, tmp_path / "detector2d.onnx")
    torch_detector = open_detector2d("builtin", SHIPPED_CHECKPOINT, "cpu")
    onnx_detector = open_detector2d("onnx", onnx_path, "cpu")
    images = [image for image, _ in val_images[:20]]
    assert len(images) == 20
    from_torch, from_onnx = [], []
    for start in range(0, 20, 6):
        from_torch += torch_detector.detect(images[start:start + 6])
        from_onnx += onnx_detector.detect(images[start:start + 6])
    agreement = compare_detections(from_torch, from_onnx, 0.99)
    assert agreement.count_a > 20
    assert agreement.matched == agreement.count_a == agreement.count_b
