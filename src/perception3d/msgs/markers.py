"""visualization_msgs/MarkerArray builders for RViz: 3D boxes as line lists, box motion as arrows, voxels as one
CUBE_LIST.

Each array starts with a DELETEALL marker in the same namespace, so boxes of the previous frame never linger
(the stale-box complaint of vision_msgs#99).
"""
from __future__ import annotations

import operator
from dataclasses import replace
from typing import Any

import numpy as np

from ..core.boxes import box_corners
from ..core.classes import DETECTION_COLORS
from ..core.detections import Detections3D
from .factory import MessageFactory, default_factory

# Marker type / action constants of visualization_msgs/Marker.
ARROW, LINE_LIST, CUBE_LIST = 0, 5, 6
ADD, DELETEALL = 0, 3

# The 12 box edges of a box's 8 corners (corner order of core.boxes), as consecutive LINE_LIST pairs.
_EDGE_CORNERS = operator.itemgetter(0, 1, 1, 2, 2, 3, 3, 0, 4, 5, 5, 6, 6, 7, 7, 4, 0, 4, 1, 5, 2, 6, 3, 7)


def _color(factory: MessageFactory, rgb, alpha: float = 1.0) -> Any:
    return factory("std_msgs/msg/ColorRGBA", r=rgb[0] / 255.0, g=rgb[1] / 255.0, b=rgb[2] / 255.0, a=alpha)


def _points(factory: MessageFactory, xyz: np.ndarray) -> list:
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return factory.many("geometry_msgs/msg/Point", x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2])


def _class_colors(factory: MessageFactory, class_ids: np.ndarray) -> dict[str, Any]:
    """One ColorRGBA per distinct class name of class_ids, grey for classes without a colour; markers refer to them
    (messages are not changed once built)."""
    return {name: _color(factory, DETECTION_COLORS.get(name, (160, 160, 160))) for name in set(map(str, class_ids))}


def _delete_all(factory: MessageFactory, header: Any, ns: str) -> Any:
    return factory("visualization_msgs/msg/Marker", header=header, ns=ns, id=0, action=DELETEALL)


def box_markers(dets: Detections3D, ns: str = "detections", line_width: float = 0.08,
                factory: MessageFactory | None = None) -> Any:
    """MarkerArray with one LINE_LIST per box (12 edges), coloured by class (grey for unknown classes)."""
    factory = factory or default_factory()
    header = factory.header(dets.stamp_ns, dets.frame_id)
    markers = [_delete_all(factory, header, ns)]
    # every box's 8 corners in one bulk call; each edge list refers to its box's corner messages (messages are not
    # changed once built), so 8 Points per box are made instead of 24
    corners = _points(factory, box_corners(dets.centers, dets.sizes_lwh, dets.yaws))
    # the markers in bulk (MessageFactory.many) from one built in full: they differ in id, colour and points
    template = factory("visualization_msgs/msg/Marker", header=header, ns=ns, type=LINE_LIST, action=ADD,
                       pose=factory("geometry_msgs/msg/Pose"),
                       scale=factory("geometry_msgs/msg/Vector3", x=line_width, y=0.0, z=0.0))
    colors = _class_colors(factory, dets.class_ids)
    markers += factory.many("visualization_msgs/msg/Marker", template, id=np.arange(1, len(dets) + 1),
                            color=[colors[str(cls)] for cls in dets.class_ids],
                            points=[_EDGE_CORNERS(corners[j:j + 8]) for j in range(0, len(corners), 8)])
    return factory("visualization_msgs/msg/MarkerArray", markers=markers)


def motion_markers(dets: Detections3D, ns: str = "motion", factory: MessageFactory | None = None) -> Any:
    """MarkerArray with one ARROW per box with a known velocity: from the box centre to where the box is in 1 s
    (velocity [m/s] = points[1] - points[0], in header.frame_id); marker id = the box's Detection3D id (an integer
    string) and `text` = its nuScenes attribute ('' when none). `motion_of_markers` reads it back. Built as
    box_markers builds its markers: the arrows' points in one bulk call, the markers in bulk from one in full."""
    factory = factory or default_factory()
    header = factory.header(dets.stamp_ns, dets.frame_id)
    markers = [_delete_all(factory, header, ns)]
    moving = np.flatnonzero(np.isfinite(dets.velocities).all(axis=1))
    if len(moving):
        starts = dets.centers[moving]
        ends = starts + np.column_stack([dets.velocities[moving], np.zeros(len(moving))])
        arrow_points = _points(factory, np.stack([starts, ends], axis=1))  # start, end of each arrow in turn
        template = factory("visualization_msgs/msg/Marker", header=header, ns=ns, type=ARROW, action=ADD,
                           pose=factory("geometry_msgs/msg/Pose"),
                           scale=factory("geometry_msgs/msg/Vector3", x=0.1, y=0.25, z=0.3))
        colors = _class_colors(factory, dets.class_ids[moving])
        markers += factory.many("visualization_msgs/msg/Marker", template, id=[int(i) for i in dets.ids[moving]],
                                color=[colors[str(cls)] for cls in dets.class_ids[moving]],
                                points=[arrow_points[2 * k:2 * k + 2] for k in range(len(moving))],
                                text=[str(attribute) for attribute in dets.attributes[moving]])
    return factory("visualization_msgs/msg/MarkerArray", markers=markers)


def motion_of_markers(msg: Any) -> dict[str, tuple[np.ndarray, str]]:
    """{Detection3D id: (velocity (2,) [m/s], attribute)} of a `motion_markers` MarkerArray (its ARROW markers)."""
    out = {}
    for marker in msg.markers:
        if marker.type == ARROW and marker.action == ADD and len(marker.points) == 2:
            a, b = marker.points
            out[str(marker.id)] = (np.array([b.x - a.x, b.y - a.y]), str(marker.text))
    return out


def with_motion(dets: Detections3D, msg: Any) -> Detections3D:
    """dets (a Detection3DArray's boxes) with the velocities and attributes of the same stamp's `motion_markers`
    MarkerArray, matched by Detection3D id; boxes without an arrow keep theirs."""
    by_id = motion_of_markers(msg)
    out = replace(dets, velocities=dets.velocities.copy(), attributes=dets.attributes.copy())
    for i, ident in enumerate(dets.ids):
        if ident in by_id:
            out.velocities[i], out.attributes[i] = by_id[ident]
    return out


def voxel_markers(centers: np.ndarray, labels: np.ndarray, palette_rgb: np.ndarray, resolution: float, stamp_ns: int,
                  frame_id: str, ns: str = "occupancy", alpha: float = 0.9,
                  factory: MessageFactory | None = None) -> Any:
    """MarkerArray with one CUBE_LIST: cubes of edge `resolution` at centres (N, 3), cube i in colour
    palette_rgb[labels[i]] (palette (K, 3), 0-255).

    One ColorRGBA message is made per palette colour and referred to by every cube of that colour (messages are not
    changed once built)."""
    factory = factory or default_factory()
    header = factory.header(stamp_ns, frame_id)
    palette = np.asarray(palette_rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    palette_msgs = factory.many("std_msgs/msg/ColorRGBA", r=palette[:, 0], g=palette[:, 1], b=palette[:, 2],
                                a=np.full(len(palette), alpha))
    cubes = factory(
        "visualization_msgs/msg/Marker", header=header, ns=ns, id=1, type=CUBE_LIST, action=ADD,
        pose=factory("geometry_msgs/msg/Pose"),
        scale=factory("geometry_msgs/msg/Vector3", x=resolution, y=resolution, z=resolution),
        color=_color(factory, (255, 255, 255), alpha),
        points=_points(factory, centers),
        colors=[palette_msgs[k] for k in np.asarray(labels, dtype=np.int64).reshape(-1).tolist()])
    return factory("visualization_msgs/msg/MarkerArray", markers=[_delete_all(factory, header, ns), cubes])
