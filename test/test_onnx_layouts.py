"""Users' ONNX detectors: YOLOv8/11, YOLOX and DETR output layouts decode to known boxes, classes and scores, from
hand-set tensors and from small exported models run through the detector2d node and its COCO -> nuScenes map."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from perception3d.core.classes import COCO_CLASSES
from perception3d.core.models.decode import DecodeParams
from perception3d.core.models.onnx_layouts import (
    InputFormat,
    LayoutError,
    decode_outputs,
    detect_layout,
    finish_detections,
    metadata_class_names,
    metadata_input_size,
    prepare_batch,
)
from perception3d.errors import ModelError
from perception3d.msgs.detections import msg_to_detections2d
from perception3d.nodes.base import CameraInput, Frame, StageTimer
from perception3d.nodes.detector2d import SYNTHETIC_CHECKPOINT_WARNING, Detector2DNode
from perception3d.nodes.params import load_parameters

PARAMS = DecodeParams(score_threshold=0.3, top_k=100, nms_iou=0.6)
CAMERAS = ("CAM_FRONT", "CAM_BACK")
IMAGE_W, IMAGE_H = 128, 96  # letterboxed into the 64x64 inputs below at scale 0.5


def _decode(layout, outputs, names, box_format, nms=True):
    candidates = decode_outputs(layout, outputs, len(names), box_format, 64, 64)
    return finish_detections(candidates, np.array([[0.5, 0.5]]), [(IMAGE_W, IMAGE_H)], names, PARAMS, nms)[0]


def _yolov8_tensor() -> np.ndarray:
    """(1, 4 + 3, 4): classes (person, car, traffic light); columns are anchors (cx, cy, w, h, scores...)."""
    anchors = [(20, 16, 8, 12, 0.05, 0.9, 0.0),  # car 0.9
               (21, 16, 8, 12, 0.0, 0.6, 0.0),  # the same car, IoU 0.78: removed by NMS
               (40, 30, 10, 20, 0.8, 0.0, 0.0),  # person 0.8
               (10, 40, 6, 6, 0.0, 0.0, 0.7)]  # traffic light 0.7
    return np.array(anchors, np.float32).T[None]


def test_yolov8_layout_decodes_hand_set_tensors_exactly():
    dets = _decode("yolov8", {"output0": _yolov8_tensor()}, ("person", "car", "traffic light"), "cxcywh")
    assert list(dets.class_ids) == ["car", "person", "traffic light"]
    np.testing.assert_allclose(dets.scores, [0.9, 0.8, 0.7], atol=1e-6)
    np.testing.assert_allclose(dets.boxes_xyxy, [[32, 20, 48, 44], [70, 40, 90, 80], [14, 74, 26, 86]], atol=1e-4)


def test_yolox_layout_multiplies_objectness_and_class_score():
    rows = np.zeros((1, 3, 5 + 80), np.float32)
    rows[0, 0, :5], rows[0, 0, 5 + 2] = (32, 32, 16, 16, 0.9), 0.8  # car 0.72
    rows[0, 1, :5], rows[0, 1, 5 + 0] = (50, 50, 8, 8, 0.2), 0.9  # person 0.18: below the threshold
    rows[0, 2, :5], rows[0, 2, 5 + 7] = (10, 10, 4, 4, 1.0), 0.5  # truck 0.5
    dets = _decode("yolox", {"output": rows}, COCO_CLASSES, "cxcywh")
    assert list(dets.class_ids) == ["car", "truck"]
    np.testing.assert_allclose(dets.scores, [0.72, 0.5], atol=1e-6)
    np.testing.assert_allclose(dets.boxes_xyxy, [[48, 48, 80, 80], [16, 16, 24, 24]], atol=1e-4)


def _detr_tensors() -> dict[str, np.ndarray]:
    """DETR style: normalised cx, cy, w, h and logits over (car, pedestrian, bus, no-object)."""
    boxes = np.array([[[0.5, 0.5, 0.25, 0.5], [0.5, 0.5, 0.9, 0.9], [0.25, 0.25, 0.125, 0.125],
                       [0.75, 0.25, 0.1, 0.1]]], np.float32)
    logits = np.array([[[5, 0, 0, 0], [0, 0, 0, 5], [0, 3, 0, 0], [0, 0, 2, 0]]], np.float32)
    return {"pred_boxes": boxes, "logits": logits}


DETR_EXPECTED_SCORES = [np.exp(5) / (np.exp(5) + 3), np.exp(3) / (np.exp(3) + 3), np.exp(2) / (np.exp(2) + 3)]
DETR_EXPECTED_BOXES = [[48, 32, 80, 96], [24, 24, 40, 40], [89.6, 25.6, 102.4, 38.4]]


def test_detr_layout_softmax_logits_with_no_object_class():
    dets = _decode("detr", _detr_tensors(), ("car", "pedestrian", "bus"), "cxcywh_norm", nms=False)
    assert list(dets.class_ids) == ["car", "pedestrian", "bus"]  # the no-object query is gone
    np.testing.assert_allclose(dets.scores, DETR_EXPECTED_SCORES, atol=1e-6)
    np.testing.assert_allclose(dets.boxes_xyxy, DETR_EXPECTED_BOXES, atol=1e-4)


def test_detr_layout_with_labels_and_pixel_boxes():
    outputs = {"labels": np.array([[2, 0, 1]]), "boxes": np.array([[[4, 6, 20, 30], [0, 0, 64, 64], [10, 10, 12, 12]]],
                                                                   np.float32),
               "scores": np.array([[0.95, 0.1, 0.4]], np.float32)}
    dets = _decode("detr", outputs, COCO_CLASSES, "xyxy", nms=False)
    assert list(dets.class_ids) == ["car", "bicycle"]
    np.testing.assert_allclose(dets.scores, [0.95, 0.4], atol=1e-6)
    np.testing.assert_allclose(dets.boxes_xyxy, [[8, 12, 40, 60], [20, 20, 24, 24]])


def test_layout_detection_from_output_names_and_shapes():
    assert detect_layout({"output0": (1, 84, 8400)}) == "yolov8"
    assert detect_layout({"output": (1, 8400, 85)}) == "yolox"
    assert detect_layout({"output0": (1, 7, 4)}, num_classes=3) == "yolov8"
    assert detect_layout({"output": (1, 4, 8)}, num_classes=3) == "yolox"
    assert detect_layout({"pred_logits": (1, 100, 92), "pred_boxes": (1, 100, 4)}) == "detr"
    assert detect_layout({"labels": (1, 300), "boxes": (1, 300, 4), "scores": (1, 300)}) == "detr"
    assert detect_layout({"heatmap": (1, 10, 8, 8), "size": (1, 2, 8, 8), "offset": (1, 2, 8, 8)}) == "centernet"
    with pytest.raises(LayoutError, match="cannot tell the output layout"):
        detect_layout({"a": (1, 5), "b": (1, 5, 2)})
    with pytest.raises(LayoutError, match="3 class rows for 80 class names"):
        decode_outputs("yolov8", {"output0": np.zeros((1, 7, 4))}, 80, "cxcywh", 64, 64)


def test_metadata_of_ultralytics_exports_is_read_as_literals_only():
    assert metadata_class_names({"names": "{0: 'person', 1: 'car'}"}) == ("person", "car")
    assert metadata_class_names({"class_names": '["a", "b"]'}) == ("a", "b")
    assert metadata_input_size({"imgsz": "[480, 640]"}) == (640, 480)
    with pytest.raises(LayoutError):
        metadata_class_names({"names": "__import__('os').getcwd()"})


def test_input_preparation_resize_channel_order_and_normalisation():
    image = np.zeros((2, 4, 3), np.uint8)
    image[..., 0], image[..., 2] = 255, 51  # R = 1.0, B = 0.2
    fmt = InputFormat(2, 2, resize="stretch", channel_order="bgr", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    batch, scales = prepare_batch([image], fmt)
    assert batch.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(scales, [[0.5, 1.0]])
    np.testing.assert_allclose(batch[0, :, 0, 0], [(0.2 - 0.1) / 0.5, (0.0 - 0.2) / 0.5, (1.0 - 0.3) / 0.5],
                               atol=1e-6)
    batch, scales = prepare_batch([image], InputFormat(8, 8, std=(1 / 255,) * 3))  # 0-255 input, letterbox
    np.testing.assert_allclose(scales, [[2.0, 2.0]])
    assert batch[0, 0, 1, 1] == pytest.approx(255.0, abs=1e-3) and batch[0, 0, 7, 7] == 0.0  # padding stays 0


# ----- exported models through the node --------------------------------------------------------------------------
class _Constant(nn.Module):
    """A tiny random-weight network whose outputs are hand-set tensors plus a small input-dependent term
    (|term| <= 1e-4), so the export, onnxruntime and the decoder run for real while the decode stays known."""

    def __init__(self, outputs: dict[str, np.ndarray]):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 8, 8)
        self.names = list(outputs)
        for i, value in enumerate(outputs.values()):
            self.register_buffer(f"out{i}", torch.from_numpy(np.asarray(value)))

    def forward(self, x):
        term = 1e-4 * torch.tanh(self.conv(x).mean())
        values = [getattr(self, f"out{i}") for i in range(len(self.names))]
        return tuple(v + term if v.is_floating_point() else v for v in values)


def _export(outputs: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None, dynamic: bool = False):
    kwargs = {"dynamic_axes": {"images": {2: "height", 3: "width"}}} if dynamic else {}
    torch.onnx.export(_Constant(outputs).eval(), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["images"],
                      output_names=list(outputs), opset_version=17, dynamo=False, **kwargs)
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return path


def _node(model_path, **overrides) -> Detector2DNode:
    values = load_parameters(None, {"detector2d": Detector2DNode.parameters})["detector2d"]
    values.update({"camera_names": list(CAMERAS), "backend": "onnx", "model_path": str(model_path), "device": "cpu",
                   "threads": 1, "warm_up": False, "score_threshold": 0.3, **overrides})
    return Detector2DNode(values)


def _run(node: Detector2DNode):
    from perception3d.core.camera import CameraModel

    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    cameras = {name: CameraInput(name, 1_000 + i, i, name, camera=CameraModel(K, IMAGE_W, IMAGE_H, frame_id=name),
                                 image=np.full((IMAGE_H, IMAGE_W, 3), 60 * (i + 1), np.uint8))
               for i, name in enumerate(CAMERAS)}
    out = dict(node.process(Frame(1_000, None, cameras, {}), None, StageTimer()))
    return {name: msg_to_detections2d(out[f"~/output/{name}/detections"]) for name in CAMERAS}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter warns about itself
def test_exported_yolov8_model_with_ultralytics_metadata_through_the_node(tmp_path):
    path = _export({"output0": _yolov8_tensor()}, tmp_path / "yolov8.onnx", dynamic=True,
                   metadata={"names": "{0: 'person', 1: 'car', 2: 'traffic light'}", "imgsz": "[64, 64]"})
    node = _node(path)
    assert node.detector.layout == "yolov8" and node.detector.class_names == ("person", "car", "traffic light")
    for name, dets in _run(node).items():
        assert list(dets.class_ids) == ["car", "pedestrian"], name  # COCO -> nuScenes; traffic light dropped
        np.testing.assert_allclose(dets.scores, [0.9, 0.8], atol=2e-3)
        np.testing.assert_allclose(dets.boxes_xyxy, [[32, 20, 48, 44], [70, 40, 90, 80]], atol=0.02)
    assert "{'traffic light': 2}" in node.model_state()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_exported_yolox_model_with_coco_default_classes_through_the_node(tmp_path):
    rows = np.zeros((1, 3, 5 + 80), np.float32)
    rows[0, 0, :5], rows[0, 0, 5 + 2] = (32, 32, 16, 16, 0.9), 0.8
    rows[0, 2, :5], rows[0, 2, 5 + 7] = (10, 10, 4, 4, 1.0), 0.5
    node = _node(_export({"output": rows}, tmp_path / "yolox.onnx"))
    assert node.detector.layout == "yolox" and node.detector.class_names == COCO_CLASSES
    for dets in _run(node).values():
        assert list(dets.class_ids) == ["car", "truck"]
        np.testing.assert_allclose(dets.scores, [0.72, 0.5], atol=2e-3)
        np.testing.assert_allclose(dets.boxes_xyxy, [[48, 48, 80, 80], [16, 16, 24, 24]], atol=0.02)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_exported_detr_model_with_class_names_parameter_through_the_node(tmp_path):
    node = _node(_export(_detr_tensors(), tmp_path / "detr.onnx"), class_names="car, pedestrian, bus")
    assert node.detector.layout == "detr"
    for dets in _run(node).values():
        assert list(dets.class_ids) == ["car", "pedestrian", "bus"]
        np.testing.assert_allclose(dets.scores, DETR_EXPECTED_SCORES, atol=2e-3)
        np.testing.assert_allclose(dets.boxes_xyxy, DETR_EXPECTED_BOXES, atol=0.02)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_model_that_fits_no_layout_or_the_wrong_one_is_a_model_error(tmp_path):
    two = _export({"a": np.zeros((1, 5), np.float32), "b": np.zeros((1, 5, 2), np.float32)}, tmp_path / "two.onnx")
    with pytest.raises(ModelError, match="cannot tell the output layout"):
        _node(two)
    yolo = _export({"output0": _yolov8_tensor()}, tmp_path / "yolo.onnx")  # 3 classes, no names: COCO's 80
    with pytest.raises(ModelError, match="3 class rows for 80 class names"):
        _node(yolo, onnx_layout="yolov8")
    with pytest.raises(ModelError, match="dynamic size"):
        _node(_export({"output0": _yolov8_tensor()}, tmp_path / "dyn.onnx", dynamic=True))


def test_shipped_checkpoint_warns_that_it_was_trained_on_synthetic_renders(caplog):
    values = load_parameters(None, {"detector2d": Detector2DNode.parameters})["detector2d"]
    values.update({"device": "cpu", "threads": 1, "warm_up": False})
    Detector2DNode(values)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage() == SYNTHETIC_CHECKPOINT_WARNING]
    assert len(warnings) == 1 and "set model_path to your detector's ONNX file" in warnings[0]
