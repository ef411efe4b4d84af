"""The detector2d node: one batched forward pass per camera firing cycle, outputs per camera with the image stamps,
clear errors for bad models and images."""
import numpy as np
import pytest

from detector2d_data import TINY
from perception3d.core.camera import CameraModel
from perception3d.core.models.centernet import CenterNet, CenterNetConfig
from perception3d.core.models.checkpoint import save_checkpoint
from perception3d.errors import ModelError
from perception3d.msgs.detections import msg_to_detections2d
from perception3d.nodes.base import CameraInput, Frame, StageTimer
from perception3d.nodes.detector2d import Detector2DNode
from perception3d.nodes.params import load_parameters

CAMERAS = ("CAM_FRONT", "CAM_BACK")
K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])


def params(model_path, **overrides):
    values = load_parameters(None, {"detector2d": Detector2DNode.parameters})["detector2d"]
    values.update({"camera_names": list(CAMERAS), "model_path": str(model_path), "device": "cpu", "threads": 1,
                   "warm_up": False, "score_threshold": 0.0, **overrides})
    return values


def frame(width=128, height=96, sizes=None):
    cameras = {}
    for i, name in enumerate(CAMERAS):
        w, h = sizes[i] if sizes else (width, height)
        cameras[name] = CameraInput(name, 1_000 + i, i, name, camera=CameraModel(K, width, height, frame_id=name),
                                    image=np.full((h, w, 3), 40 * (i + 1), np.uint8))
    return Frame(1_000, None, cameras, {})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("det2d") / "tiny.pt"
    save_checkpoint(path, CenterNet(TINY))
    return path


def test_one_forward_pass_for_all_cameras_and_outputs_with_each_image_stamp(checkpoint):
    node = Detector2DNode(params(checkpoint))
    calls = []
    heads = node.detector.heads
    node.detector.heads = lambda batch: calls.append(batch.shape) or heads(batch)
    out = dict(node.process(frame(), None, StageTimer()))
    assert calls == [(2, 3, TINY.input_height, TINY.input_width)]
    assert sorted(out) == ["~/output/CAM_BACK/detections", "~/output/CAM_FRONT/detections"]
    for i, name in enumerate(CAMERAS):
        dets = msg_to_detections2d(out[f"~/output/{name}/detections"])
        assert dets.stamp_ns == 1_000 + i and dets.frame_id == name
        assert set(dets.class_ids) <= set(TINY.class_names)
        assert np.all(dets.boxes_xyxy[:, 2] <= 128 + 1e-6) or len(dets) == 0


def test_a_bad_image_removes_only_that_camera_from_the_batch(checkpoint):
    """A wrong-size image (vs its CameraInfo) or one that does not decode leaves the batch (counted); a grey JPEG
    is batched as RGB; the other cameras of the firing cycle come out."""
    from perception3d.core.tf_buffer import TfBuffer
    from perception3d.msgs.camera_info import camera_model_to_camera_info
    from perception3d.msgs.image import compressed_image_msg, encode_jpeg
    from perception3d.nodes.runner import NodeRunner

    cameras = ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT", "CAM_BACK_LEFT")
    values = params(checkpoint, camera_names=list(cameras))
    topics = {p.port: p.port for p in Detector2DNode.input_ports(cameras)}
    topics.update({p: p for p in (*Detector2DNode.output_ports(cameras), *Detector2DNode.label_ports(cameras))})
    runner = NodeRunner(Detector2DNode, values, topics, TfBuffer())
    calls = []
    heads = runner.node.detector.heads
    runner.node.detector.heads = lambda batch: calls.append(batch.shape[0]) or heads(batch)
    images = {"CAM_FRONT": encode_jpeg(np.full((96, 128, 3), 90, np.uint8)),
              "CAM_BACK": encode_jpeg(np.full((48, 64, 3), 90, np.uint8)),  # CameraInfo says 128x96
              "CAM_FRONT_LEFT": encode_jpeg(np.full((96, 128), 90, np.uint8)),  # grey JPEG
              "CAM_BACK_LEFT": b"not a jpeg"}
    out = []
    for i, name in enumerate(cameras):
        info = camera_model_to_camera_info(CameraModel(K, 128, 96, frame_id=name), 1_000 + i)
        runner.on_message(f"~/input/{name}/camera_info", info)
        out += runner.on_message(f"~/input/{name}/image", compressed_image_msg(images[name], 1_000 + i, name))
    assert calls == [2] and sorted(p.topic for p in out) == ["~/output/CAM_FRONT/detections",
                                                             "~/output/CAM_FRONT_LEFT/detections"]
    wrong_size = "ImageError: ~/input/CAM_BACK/image field 'width/height'"
    assert runner.stats.drops == {wrong_size: 1, "ImageError: ~/input/CAM_BACK_LEFT/image field 'data'": 1}
    assert "CameraInfo size 128x96" in runner.stats.last_error[wrong_size]


def test_bad_models_stop_the_node_at_start(checkpoint, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Detector2DNode(params(tmp_path / "missing.pt"))
    other = tmp_path / "other_classes.pt"
    save_checkpoint(other, CenterNet(CenterNetConfig(**{**TINY.to_dict(), "class_names": ("car", "bus")})))
    with pytest.raises(ModelError):
        Detector2DNode(params(other))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        Detector2DNode(params(junk, backend="onnx"))
