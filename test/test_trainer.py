"""The shared trainer: data-parallel steps equal one-process steps, the run log and curves, max-steps, AMP checks."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from detector2d_data import TINY, rectangle_image
from perception3d.core.models.checkpoint import load_checkpoint, read_checkpoint
from perception3d.errors import ConfigError
from perception3d.train.augment import AugmentConfig
from perception3d.train.detector2d import CenterNetSamples, Detector2DData, train_detector2d
from perception3d.train.run_log import curves_path, log_path, read_log
from perception3d.train.trainer import TrainConfig
from synth_data import VERSION, tiny_dataroot

PLAIN = Detector2DData(augment=None)


@pytest.mark.slow
def test_torchrun_two_processes_take_the_same_step_as_one_process(tmp_path):
    """One optimizer step of `train detector2d` under `torchrun --nproc_per_node 2` (gloo, 2 images per process)
    against one process on the same 4 images: batch-norm statistics and loss normalisers over the global batch
    make the two equal. Adam's first step moves a weight by about lr * g / |g|, so float32 rounding of gradients
    near zero is amplified towards lr: at lr 1e-4 the largest difference was 2.7e-6 on an AMD EPYC and 1.2e-5 on an
    Intel Xeon (one of the 383,910 weights; all others within 1e-6; at lr 1e-3, 2.7e-5 on the AMD EPYC). So every
    weight lies within lr of the other run's and all but a few within 1e-6. Without global batch-norm statistics
    the difference is 3.5e-2."""
    args = ["train", "detector2d", "--dataroot", str(tiny_dataroot()), "--version", VERSION, "--split", "synth_train",
            "--width", "8", "--input-size", "128x64", "--crop", "full", "--batch", "4", "--epochs", "3",
            "--max-steps", "1", "--device", "cpu", "--seed", "3", "--lr", "1e-4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "perception3d.cli", *args, "--out", str(tmp_path / "one.pt")], env=env,
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "perception3d.cli",
                    *args, "--out", str(tmp_path / "two.pt")], env=env, check=True, capture_output=True)
    one, two = read_checkpoint(tmp_path / "one.pt"), read_checkpoint(tmp_path / "two.pt")
    assert one["train_state"]["step"] == two["train_state"]["step"] == 1
    assert two["record"]["hardware"]["processes"] == 2 and one["record"]["hardware"]["processes"] == 1
    differences = []
    for name, weight in one["state_dict"].items():
        assert weight.dtype == two["state_dict"][name].dtype
        if weight.is_floating_point():
            torch.testing.assert_close(two["state_dict"][name], weight, rtol=0, atol=1e-4, msg=name)  # lr
            differences.append((two["state_dict"][name] - weight).abs().flatten())
    assert int((torch.cat(differences) > 1e-6).sum()) <= 10
    running = [n for n in one["state_dict"] if n.endswith("running_mean")]
    assert running and any(float(one["state_dict"][n].abs().max()) > 0 for n in running)  # statistics were taken


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rectangle_image(rng) for _ in range(count)]


def test_run_log_holds_every_step_and_validation_and_the_curves_are_drawn(tmp_path):
    data = _images(4)
    out = tmp_path / "run.pt"
    config = TrainConfig(epochs=3, batch_size=2, lr=3e-3, device="cpu", checkpoint_every=0)
    result = train_detector2d(data, out, TINY, config, val_set=data[:2], progress=False, data=PLAIN,
                              command="perception3d train detector2d --test")
    entries = read_log(log_path(out))
    steps = [e for e in entries if e["kind"] == "step"]
    validations = [e for e in entries if e["kind"] == "validation"]
    assert [e["step"] for e in steps] == list(range(1, 7)) and result.steps == 6
    assert [e["epoch"] for e in validations] == [1, 2, 3]
    assert all({"loss", "lr", "heatmap", "size", "offset", "samples_per_s"} <= set(e) for e in steps)
    assert steps[0]["lr"] == pytest.approx(3e-3) and steps[-1]["lr"] < steps[0]["lr"]  # cosine decay
    assert validations[-1]["mean_ap"] == pytest.approx(result.metrics["mean_ap"])
    record = read_checkpoint(out)["record"]
    assert record["command"] == "perception3d train detector2d --test"
    assert record["data"]["train_images"] == 4 and record["data"]["val_images"] == 2
    assert record["metrics"]["mean_ap"] == pytest.approx(result.metrics["mean_ap"])
    with Image.open(curves_path(out)) as png:
        assert png.size == (1000, 360)
        assert np.asarray(png.convert("L")).std() > 10  # something is drawn
    json.dumps(record)  # the record is JSON-able


def test_max_steps_stops_early_and_leaves_a_resumable_checkpoint(tmp_path):
    data = _images(4, seed=1)
    out = tmp_path / "capped.pt"
    capped = TrainConfig(epochs=2, batch_size=1, device="cpu", checkpoint_every=0, max_steps=3)
    assert train_detector2d(data, out, TINY, capped, progress=False, data=PLAIN).steps == 3
    _, state = load_checkpoint(out)
    assert state["step"] == 3 and state["epoch"] == 0 and "optimizer" in state
    assert read_checkpoint(out)["state_dict"]["heatmap.2.weight"].dtype == torch.float32
    full = TrainConfig(epochs=2, batch_size=1, device="cpu", checkpoint_every=0)
    resumed = train_detector2d(data, out, TINY, full, resume=True, progress=False, data=PLAIN)
    assert resumed.steps == 3 + 8  # the interrupted epoch restarts from its beginning
    assert read_checkpoint(out)["state_dict"]["heatmap.2.weight"].dtype == torch.float16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_amp_needs_cuda(tmp_path):
    with pytest.raises(ConfigError, match="--amp needs a CUDA device"):
        train_detector2d(_images(1), tmp_path / "x.pt", TINY, TrainConfig(device="cpu", amp=True), progress=False)


def test_augmentation_depends_only_on_seed_epoch_and_index():
    """So that a resumed run and N torchrun processes see the samples one uninterrupted process sees."""
    data = _images(3, seed=2)
    first, again = (CenterNetSamples(data, TINY, AugmentConfig()) for _ in range(2))
    first.seed = again.seed = 5
    assert torch.equal(again[2]["image"], first[2]["image"])
    again.set_epoch(1)
    assert not torch.equal(again[2]["image"], first[2]["image"])


def test_detector2d_trains_from_a_sweep_cache_of_every_distinct_camera_image(tmp_path):
    """`train detector2d --cache`: one training item per distinct camera image that the cache's sweeps see (nearly
    every image of the scene's sample_data table: the sweep cache keeps images within 0.1 s of a sweep), boxes inside
    the stored small images, and the cache named in the record."""
    from perception3d.cli import main
    from perception3d.train.data.camera_images import CachedCameraImages

    root = tiny_dataroot()
    cache = tmp_path / "cache"
    assert main(["dataset", "build", "--no-progress", "--dataroot", str(root), "--version", VERSION, "--split",
                 "synth_val", "--out", str(cache), "--images", "small", "--past-sweeps", "0"]) == 0
    tables = root / VERSION
    scene = json.loads((tables / "splits.json").read_text())["synth_val"]
    scene_tokens = {s["token"] for s in json.loads((tables / "scene.json").read_text()) if s["name"] in scene}
    samples = {s["token"] for s in json.loads((tables / "sample.json").read_text()) if s["scene_token"] in scene_tokens}
    cameras = {c["token"] for c in json.loads((tables / "sensor.json").read_text()) if c["modality"] == "camera"}
    calibrations = {c["token"] for c in json.loads((tables / "calibrated_sensor.json").read_text())
                    if c["sensor_token"] in cameras}
    camera_images = [d for d in json.loads((tables / "sample_data.json").read_text())
                     if d["sample_token"] in samples and d["calibrated_sensor_token"] in calibrations]
    images = CachedCameraImages(cache)
    sweeps = [images.sweeps[i] for i in range(len(images.sweeps))]
    seen = {(camera, stamp) for s in sweeps
            for camera, stamp, valid in zip(s["cameras"], s["cam_timestamp_us"], s["cam_valid"]) if valid}
    assert len(images) == len(seen)
    assert len(camera_images) - 6 <= len(images) <= len(camera_images)
    boxes = 0
    for k in range(0, len(images), 7):
        image, dets = images[k]
        height, width = image.shape[:2]
        assert image.dtype == np.uint8 and width < 1600 / 2  # the small decoding
        assert np.all(dets.boxes_xyxy >= -0.5) and np.all(dets.boxes_xyxy[:, [0, 2]] <= width + 0.5)
        boxes += len(dets)
    assert boxes > 0
    out = tmp_path / "det.pt"
    assert main(["train", "detector2d", "--cache", str(cache), "--out", str(out), "--width", "8", "--input-size",
                 "128x64", "--crop", "full", "--batch", "2", "--max-steps", "1", "--device", "cpu"]) == 0
    record = read_checkpoint(out)["record"]
    assert record["data"]["train_images"] == len(images)
    assert str(cache) in record["data"]["train_source"] and record["command"].startswith("perception3d train")
