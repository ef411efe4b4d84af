"""The summary of a sweep cache (added up from the per-scene counts in its manifest) and its printout."""
from __future__ import annotations

from collections import Counter

from ...core.classes import DETECTION_CLASSES, LIDARSEG_FINE_CATEGORIES


def summarize(manifest: dict) -> dict:
    """{scenes, samples, keyframes, boxes_per_class, points_per_sweep {mean, min, max}, skipped_categories,
    unknown_categories, extrapolated_boxes, images, boxes2d, images_without_boxes2d} of a manifest."""
    stats = [manifest["scenes"][name]["stats"] for name in manifest["scene_order"]]
    boxes, skipped = Counter(), Counter()
    for s in stats:
        boxes.update(s["boxes_per_class"])
        skipped.update(s["skipped_categories"])
    samples = sum(s["samples"] for s in stats)
    return {
        "scenes": len(stats), "samples": samples, "keyframes": sum(s["keyframes"] for s in stats),
        "boxes_per_class": {c: boxes[c] for c in DETECTION_CLASSES if boxes[c]},
        "points_per_sweep": {"mean": sum(s["points"]["sum"] for s in stats) / max(samples, 1),
                             "min": min((s["points"]["min"] for s in stats), default=0),
                             "max": max((s["points"]["max"] for s in stats), default=0)},
        "skipped_categories": dict(sorted(skipped.items())),
        # categories that are not nuScenes ones: another taxonomy the class mapping does not know (e.g. Lyft's)
        "unknown_categories": {c: n for c, n in sorted(skipped.items()) if c not in LIDARSEG_FINE_CATEGORIES},
        "extrapolated_boxes": sum(s["extrapolated_boxes"] for s in stats),
        "images": sum(s["images"] for s in stats), "boxes2d": sum(s["boxes2d"] for s in stats),
        "images_without_boxes2d": sum(s["images_without_boxes2d"] for s in stats),
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines of a summary."""
    pts = summary["points_per_sweep"]
    lines = [f"scenes {summary['scenes']}  samples {summary['samples']}  keyframes {summary['keyframes']}",
             f"points per sweep: mean {pts['mean']:.0f}  min {pts['min']}  max {pts['max']}",
             "3D boxes per class: " + (", ".join(f"{c} {n}" for c, n in summary["boxes_per_class"].items())
                                       or "none"),
             f"  of them moved at their velocity from one keyframe (not interpolated): "
             f"{summary['extrapolated_boxes']}",
             f"images {summary['images']}  2D boxes {summary['boxes2d']}"
             + (f"  images without 2D boxes in the bag {summary['images_without_boxes2d']}"
                if summary["images_without_boxes2d"] else "")]
    if summary["skipped_categories"]:
        lines.append("annotations without a detection class (left out): "
                     + ", ".join(f"{c} {n}" for c, n in summary["skipped_categories"].items()))
    if summary["unknown_categories"]:
        lines.append("WARNING: categories unknown to the class mapping (core/classes.py): "
                     + ", ".join(f"{c} {n}" for c, n in summary["unknown_categories"].items()))
    return "\n".join(lines)
