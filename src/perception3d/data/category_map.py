"""Category maps: a dataset's annotation category names -> the 10 detection classes and the 16 lidarseg classes.

Every reader of a nuScenes-schema dataroot (convert, evaluation ground truth, training data) asks one
`CategoryMap` which detection / lidarseg class an annotation belongs to, so a dataset with other category names
(Lyft Level 5: `car`, `pedestrian`, `other_vehicle`, ...) gives the same classes everywhere.

A map says, per category name, either a class or None ("deliberately not a detection class", e.g. nuScenes'
`vehicle.emergency.police`, which the devkit's detection benchmark ignores). A name the map does not list at all
is *unmapped*. Both kinds are counted while reading (`CategoryCounts`) and reported in one warning, so no
annotation disappears silently.

Built-in maps: `nuscenes` (the devkit's own mapping, core.classes) and `lyft` (Lyft Level 5's nine categories).
Any other dataset: a YAML file (loaded with yaml.safe_load)::

    detection:            # category name -> detection class (core.classes.DETECTION_CLASSES) or null
      sedan: car
      van: car
      animal: null
    lidarseg:             # optional: category name -> lidarseg class (core.classes.LIDARSEG_CLASSES)
      sedan: car          # default: the detection class when it has one, else 'ignore'
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.classes import (
    CATEGORY_TO_DETECTION,
    DETECTION_CLASSES,
    FINE_TO_COARSE,
    LIDARSEG_CLASSES,
    LIDARSEG_FINE_CATEGORIES,
)
from ..errors import ConfigError


@dataclass(frozen=True)
class CategoryMap:
    """Category name -> detection class (None: not one) and -> lidarseg class name ('ignore' for none).

    Attributes:
        name: 'nuscenes', 'lyft' or the YAML file's path.
        detection: {category: detection class or None}; categories not listed are unmapped.
        lidarseg: {category: lidarseg evaluation class name}.
    """

    name: str
    detection: Mapping[str, str | None]
    lidarseg: Mapping[str, str]

    def __post_init__(self) -> None:
        bad = {c: t for c, t in self.detection.items() if t is not None and t not in DETECTION_CLASSES}
        if bad:
            raise ConfigError(f"category map {self.name}: detection targets {bad} are not detection classes "
                              f"{list(DETECTION_CLASSES)} (or null)")
        bad = {c: t for c, t in self.lidarseg.items() if t not in LIDARSEG_CLASSES}
        if bad:
            raise ConfigError(f"category map {self.name}: lidarseg targets {bad} are not lidarseg classes "
                              f"{list(LIDARSEG_CLASSES)}")

    def detection_class(self, category: str, counts: CategoryCounts | None = None) -> str | None:
        """The detection class of a category (None when it has none), counted into `counts` when given."""
        target = self.detection.get(category)
        if counts is not None:
            counts.add(category, target, category in self.detection)
        return target

    def lidarseg_class(self, category: str) -> str:
        """The lidarseg evaluation class name of a category ('ignore' when unmapped)."""
        return self.lidarseg.get(category, "ignore")

    def coverage(self, categories: Iterable[str]) -> int:
        """How many of the given category names this map lists."""
        return sum(c in self.detection for c in set(categories))


@dataclass
class CategoryCounts:
    """Annotations seen per category while reading with a map: kept (with a class), not a class, unmapped."""

    kept: Counter = field(default_factory=Counter)
    not_a_class: Counter = field(default_factory=Counter)
    unmapped: Counter = field(default_factory=Counter)

    def add(self, category: str, target: str | None, listed: bool) -> None:
        (self.kept if target is not None else self.not_a_class if listed else self.unmapped)[category] += 1

    def warning(self, map_name: str) -> str | None:
        """One line about the annotations left out (None when every annotation got a class)."""
        if not self.unmapped and not self.not_a_class:
            return None
        parts = []
        if self.unmapped:
            parts.append(f"{sum(self.unmapped.values())} annotation(s) of categories the '{map_name}' category map "
                         f"does not list were left out: {dict(self.unmapped.most_common())} (add them to a category "
                         f"map YAML: --category-map FILE)")
        if self.not_a_class:
            parts.append(f"{sum(self.not_a_class.values())} annotation(s) of categories that map to no detection "
                         f"class were left out: {dict(self.not_a_class.most_common())}")
        return "; ".join(parts) + f" (kept {sum(self.kept.values())})"


NUSCENES = CategoryMap(
    "nuscenes",
    detection={name: CATEGORY_TO_DETECTION.get(name) for name in LIDARSEG_FINE_CATEGORIES},
    lidarseg={name: LIDARSEG_CLASSES[FINE_TO_COARSE[i]] for i, name in enumerate(LIDARSEG_FINE_CATEGORIES)},
)

# Lyft Level 5 (nuScenes schema). As in the nuScenes benchmark, animals and emergency vehicles are no detection
# class; `other_vehicle` mixes vans, trailers and construction machines, so it has no single nuScenes class.
_LYFT_DETECTION: dict[str, str | None] = {
    "car": "car", "pedestrian": "pedestrian", "bicycle": "bicycle", "motorcycle": "motorcycle", "bus": "bus",
    "truck": "truck", "other_vehicle": None, "emergency_vehicle": None, "animal": None,
}
LYFT = CategoryMap("lyft", detection=_LYFT_DETECTION,
                   lidarseg={name: target or "ignore" for name, target in _LYFT_DETECTION.items()})

BUILTIN_MAPS: dict[str, CategoryMap] = {m.name: m for m in (NUSCENES, LYFT)}


def load_category_map(path: str | Path) -> CategoryMap:
    """A CategoryMap from a YAML file (layout in the module docstring).

    Raises:
        ConfigError: unreadable file, invalid YAML, a wrong layout or a target that is not a class.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the category map: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    detection = doc.get("detection") if isinstance(doc, Mapping) else None
    lidarseg = doc.get("lidarseg", {}) if isinstance(doc, Mapping) else None
    if not isinstance(detection, Mapping) or not isinstance(lidarseg, Mapping) or set(doc) - {"detection", "lidarseg"}:
        raise ConfigError(f"{path}: expected a mapping with 'detection' ({{category: class or null}}) and optional "
                          f"'lidarseg' ({{category: lidarseg class}})")
    detection = {str(k): (None if v is None else str(v)) for k, v in detection.items()}
    seg = {c: t or "ignore" for c, t in detection.items()}
    seg.update({str(k): str(v) for k, v in lidarseg.items()})
    return CategoryMap(str(path), detection, seg)


def category_map_for(categories: Iterable[str], spec: str | Path | None = None) -> CategoryMap:
    """The map to read a dataset with: `spec` = 'nuscenes', 'lyft' or a YAML path; None picks the built-in map
    that lists most of the dataset's category names (nuScenes on a tie).

    Raises:
        ConfigError: a YAML file that cannot be used.
    """
    if spec is not None and str(spec) in BUILTIN_MAPS:
        return BUILTIN_MAPS[str(spec)]
    if spec is not None:
        return load_category_map(spec)
    names = set(categories)
    return max(BUILTIN_MAPS.values(), key=lambda m: m.coverage(names))  # max keeps the first (nuscenes) on ties
