"""The shipped checkpoint (core/models/weights/detector2d_synth.pt) on a scene of a world seed training never saw,
and its ONNX export.

AP is scored as training validation scores it (train.detector2d.VALIDATION_DECODE: score threshold 0.05), since
average precision needs the low-score tail of the ranking; the node's default threshold cuts recall and so AP.
Issue 6 asks for car AP@0.5 >= 0.6 on a held-out synthetic val subset (measured 0.727 here when shipped). Near
objects cut by the image border (taller than 400 px at 1600x900) hold most of a sweep's object points, so
segmentation depends on finding them (benchmarks/results/detector2d_training.md).
"""
import pytest

from perception3d.core.boxes import iou_2d
from perception3d.core.models.backends import open_detector2d
from perception3d.core.models.checkpoint import load_checkpoint
from perception3d.core.models.decode import DecodeParams
from perception3d.core.models.export import export_onnx
from perception3d.core.models.options import RunnerOptions
from perception3d.core.models.shipped import SHIPPED_CHECKPOINT
from perception3d.data.synth import SynthConfig, synthesize
from perception3d.eval.backend_agreement import compare_detections
from perception3d.nodes.detector2d import DEFAULT_SCORE_THRESHOLD
from perception3d.train.detector2d import VALIDATION_DECODE, evaluate
from perception3d.train.nuscenes_boxes import NuScenesCameraBoxes

VAL_SEED = 99  # the shipped checkpoint was trained on seed-11 and seed-21 scenes
NODE_DECODE = DecodeParams(score_threshold=DEFAULT_SCORE_THRESHOLD)
CPU = RunnerOptions("cpu")
NEAR_RECALL_BOUND = 0.8  # measured 0.95 when shipped; the stage-1 checkpoint (no context blocks) gave 0.08 at 0.3


@pytest.fixture(scope="module")
def val_images(tmp_path_factory):
    root = synthesize(tmp_path_factory.mktemp("det2d_val") / "root", SynthConfig(scenes=1, seconds=4.0, seed=VAL_SEED),
                      progress=False)
    dataset = NuScenesCameraBoxes(root, "v1.0-synth", "synth_val")
    return [dataset[i] for i in range(len(dataset))]


def _detect_all(detector, images):
    """Detections for every image, six cameras' worth per forward pass."""
    return [dets for start in range(0, len(images), 6) for dets in detector.detect(images[start:start + 6])]


def test_shipped_checkpoint_finds_cars(val_images):
    ap = evaluate(open_detector2d("torch", SHIPPED_CHECKPOINT, CPU, VALIDATION_DECODE), val_images, 6,
                  progress=False)
    assert ap.num_ground_truth["car"] >= 20
    assert ap.per_class()["car"] >= 0.6


def test_shipped_checkpoint_finds_near_objects(val_images):
    """Recall at IoU 0.5 of the objects taller than 400 px (near, mostly cut by the image border), any class."""
    detector = open_detector2d("torch", SHIPPED_CHECKPOINT, CPU, NODE_DECODE)
    found = []
    for dets, (_, truth) in zip(_detect_all(detector, [image for image, _ in val_images]), val_images):
        tall = truth.boxes_xyxy[:, 3] - truth.boxes_xyxy[:, 1] > 400
        if tall.any():
            iou = iou_2d(truth.boxes_xyxy[tall], dets.boxes_xyxy)
            found += list(iou.max(axis=1) >= 0.5) if len(dets.boxes_xyxy) else [False] * int(tall.sum())
    assert len(found) >= 20
    assert sum(found) / len(found) >= NEAR_RECALL_BOUND


def test_onnx_export_of_the_shipped_model_gives_the_same_detections(val_images, tmp_path):
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    onnx_path = export_onnx(model, tmp_path / "detector2d.onnx")
    torch_detector = open_detector2d("torch", SHIPPED_CHECKPOINT, CPU)
    onnx_detector = open_detector2d("onnx", onnx_path, CPU)
    images = [image for image, _ in val_images[:20]]
    assert len(images) == 20
    agreement = compare_detections(_detect_all(torch_detector, images), _detect_all(onnx_detector, images), 0.99)
    assert agreement.count_a > 20
    assert agreement.matched == agreement.count_a == agreement.count_b
