"""`build_cache`: a nuScenes-schema dataroot's split -> a sweep cache (layout.py), re-doing only the scenes whose
key changed, with a progress bar over the sweeps."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from ...core.classes import DETECTION_CLASSES, LIDARSEG_CLASSES
from ...data.nuscenes_io import open_nuscenes, scene_by_name
from ...errors import DatasetError
from ...eval.keyframes import split_scenes
from . import layout
from .boxes2d import BagBoxes2D, boxes2d_source
from .images import IMAGE_MODES
from .scene_builder import LIDAR_CHANNEL, SceneBuilder
from .summary import summarize
from .sweeps import POINT_CHANNELS


@dataclass(frozen=True)
class BuildOptions:
    """What goes into the samples.

    Attributes:
        past_sweeps: previous LiDAR sweeps added to each sample's points (read time; the cache stores each sweep once).
        images: 'none', 'small' (JPEG draft decoding, about 1/4 per side) or 'full'.
        boxes2d: simulated detector preset 'perfect' | 'good' | 'poor', or the path of detector2d output bag(s).
        seed: seed of the simulated detector's noise.
    """

    past_sweeps: int = 9
    images: str = "none"
    boxes2d: str = "perfect"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images not in IMAGE_MODES:
            raise DatasetError(f"images {self.images!r}: expected one of {IMAGE_MODES}")
        if self.past_sweeps < 0:
            raise DatasetError(f"past_sweeps {self.past_sweeps}: expected 0 or more")


@dataclass
class BuildReport:
    manifest: dict
    rebuilt: list[str]
    reused: list[str]


def build_cache(dataroot: str | Path, version: str, split: str, out: str | Path, options: BuildOptions,
                progress: bool = True) -> BuildReport:
    """Build (or bring up to date) the cache at `out` for the scenes of `split` ('all' = every scene).

    Raises:
        DatasetError: bad dataroot, version or split, missing or corrupt files, a bad --boxes2d.
    """
    dataroot = Path(dataroot).resolve()
    nusc = open_nuscenes(dataroot, version)
    names = split_scenes(nusc, split)
    present = {s["name"] for s in nusc.scene}
    scenes = [scene_by_name(nusc, name) for name in names if name in present]
    if not scenes:
        raise DatasetError(f"{dataroot / version}: split {split!r} names no scene of this dataroot "
                           f"(it names {sorted(names)[:5]})")
    source = boxes2d_source(options.boxes2d, options.seed)
    cameras = sorted(s["channel"] for s in nusc.sensor if s["modality"] == "camera")
    attributes = [a["name"] for a in nusc.attribute]
    bag_files = source.source_files() if isinstance(source, BagBoxes2D) else []
    scene_options = {"images": options.images, "seed": options.seed,
                     "boxes2d": str(source.path.resolve()) if isinstance(source, BagBoxes2D) else options.boxes2d}
    common = {"format": layout.FORMAT_VERSION, "dataroot": str(dataroot), "version": version,
              "options": scene_options, "cameras": cameras, "attributes": attributes,
              "tables": sorted(layout.file_stamp(p) for p in (dataroot / version).glob("*.json")),
              "bags": [layout.file_stamp(p) for p in bag_files]}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old = layout.read_manifest(out) or {}
    manifest = {"format": layout.FORMAT_VERSION, "dataroot": str(dataroot), "version": version, "split": split,
                "options": {**asdict(options), **scene_options}, "cameras": cameras, "classes": list(DETECTION_CLASSES),
                "lidarseg_classes": list(LIDARSEG_CLASSES), "attributes": attributes,
                "point_channels": list(POINT_CHANNELS), "lidar_channel": LIDAR_CHANNEL,
                "scene_order": [s["name"] for s in scenes], "scenes": {}}
    order = manifest["scene_order"]
    kept = {name: entry for name, entry in old.get("scenes", {}).items() if name in order}
    builders = [SceneBuilder(nusc, scene, cameras, attributes, options.images, source) for scene in scenes]
    rebuilt, reused = [], []
    with tqdm(total=sum(len(b.lidar) for b in builders), desc="dataset build", unit="sweep",
              disable=not progress) as bar:
        for builder in builders:
            name = builder.scene["name"]
            builder.on_sample = lambda: bar.update(1)
            key = layout.scene_key(common, builder.sources())
            previous = kept.get(name)
            if previous and previous["key"] == key and layout.scene_dir(out, name).is_dir():
                manifest["scenes"][name] = previous
                reused.append(name)
                bar.update(previous["stats"]["samples"])
                continue
            arrays = builder.build()
            layout.write_scene(out, name, arrays)
            manifest["scenes"][name] = {"key": key, "stats": builder.stats.to_json()}
            rebuilt.append(name)
            kept[name] = manifest["scenes"][name]  # an interrupted build keeps what is finished
            layout.write_manifest(out, {**manifest, "scenes": kept, "scene_order": [n for n in order if n in kept]})
    for stale in set(old.get("scenes", {})) - set(manifest["scenes"]):
        layout.remove_scene(out, stale)
    manifest["summary"] = summarize(manifest)
    layout.write_manifest(out, manifest)
    return BuildReport(manifest, rebuilt, reused)

