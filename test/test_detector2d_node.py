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


FOUR_CAMERAS = ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT", "CAM_BACK_LEFT")


def image_runner(checkpoint, decode_threads):
    from perception3d.core.tf_buffer import TfBuffer
    from perception3d.nodes.runner import NodeRunner

    values = params(checkpoint, camera_names=list(FOUR_CAMERAS), image_decode_threads=decode_threads)
    return NodeRunner(Detector2DNode, values, Detector2DNode.ports_as_topics(FOUR_CAMERAS), TfBuffer())


def camera_messages(images, stamp_ns=1_000):
    """Per camera its CameraInfo (128x96) and CompressedImage messages, stamped stamp_ns + its index."""
    from perception3d.msgs.camera_info import camera_model_to_camera_info
    from perception3d.msgs.image import compressed_image_msg

    return [(name, camera_model_to_camera_info(CameraModel(K, 128, 96, frame_id=name), stamp_ns + i),
             compressed_image_msg(images[name], stamp_ns + i, name)) for i, name in enumerate(FOUR_CAMERAS)]


@pytest.mark.parametrize("decode_threads", [1, 4])
def test_a_bad_image_removes_only_that_camera_from_the_batch(checkpoint, decode_threads, monkeypatch):
    """A wrong-size image (vs its CameraInfo) or one that does not decode leaves the batch (counted); a grey JPEG
    is batched as RGB; the other cameras of the firing cycle come out: the same whether the images are decoded one
    after another or side by side on image_decode_threads threads."""
    import threading

    from perception3d.msgs.image import encode_jpeg
    from perception3d.nodes import runner as runner_module

    decoded_on = []
    decode = runner_module.compressed_image_to_array
    monkeypatch.setattr(runner_module, "compressed_image_to_array",
                        lambda *a: decoded_on.append(threading.current_thread().name) or decode(*a))
    runner = image_runner(checkpoint, decode_threads)
    batches = []
    heads = runner.node.detector.heads
    runner.node.detector.heads = lambda batch: batches.append(batch.copy()) or heads(batch)
    rng = np.random.default_rng(0)
    images = {"CAM_FRONT": encode_jpeg(rng.integers(0, 255, (96, 128, 3), np.uint8)),
              "CAM_BACK": encode_jpeg(np.full((48, 64, 3), 90, np.uint8)),  # CameraInfo says 128x96
              "CAM_FRONT_LEFT": encode_jpeg(rng.integers(0, 255, (96, 128), np.uint8)),  # grey JPEG
              "CAM_BACK_LEFT": b"not a jpeg"}
    out = []
    for name, info, image in camera_messages(images):
        runner.on_message(f"~/input/{name}/camera_info", info)
        out += runner.on_message(f"~/input/{name}/image", image)
    assert [len(b) for b in batches] == [2] and sorted(p.topic for p in out) == ["~/output/CAM_FRONT/detections",
                                                                               "~/output/CAM_FRONT_LEFT/detections"]
    wrong_size = "ImageError: ~/input/CAM_BACK/image field 'width/height'"
    assert runner.stats.drops == {wrong_size: 1, "ImageError: ~/input/CAM_BACK_LEFT/image field 'data'": 1}
    assert "CameraInfo size 128x96" in runner.stats.last_error[wrong_size]
    assert len(decoded_on) == 4
    assert all(name.startswith("detector2d-decode") for name in decoded_on) == (decode_threads > 1)
    if decode_threads > 1:  # the network got the same batch as from images decoded one after another
        serial = image_runner(checkpoint, 1)
        serial_batches = []
        serial.node.detector.heads = lambda batch: serial_batches.append(batch.copy()) or heads(batch)
        for name, info, image in camera_messages(images):
            serial.on_message(f"~/input/{name}/camera_info", info)
            serial.on_message(f"~/input/{name}/image", image)
        assert len(serial_batches) == 1 and np.array_equal(serial_batches[0], batches[0])
        assert serial_batches[0][0].std() > 0.1  # the noise image, not a blank


def test_a_forked_process_decodes_on_threads_of_its_own(checkpoint):
    """The decoding pool's threads stay in the process that started them: a process forked after its runner decoded
    (a replay worker) starts its own pool instead of queueing work for threads it does not have."""
    import multiprocessing

    from perception3d.msgs.image import encode_jpeg

    runner = image_runner(checkpoint, 2)
    images = {name: encode_jpeg(np.full((96, 128, 3), 30 * (i + 1), np.uint8)) for i, name in enumerate(FOUR_CAMERAS)}
    matches = [(name, 1_000, 0, {"image": image}) for name, _, image in camera_messages(images)]
    assert len(runner._decode_side_by_side(matches)) == 4  # the parent's pool is started

    def decode_in_child():
        decoding = runner._decode_side_by_side(matches)
        pixels = [decoding[name].result(timeout=20) for name in FOUR_CAMERAS]
        raise SystemExit(0 if [int(p[0, 0, 0]) for p in pixels] == [30, 60, 90, 120] else 1)

    child = multiprocessing.get_context("fork").Process(target=decode_in_child)
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0


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
