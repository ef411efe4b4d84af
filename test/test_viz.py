"""Pictures put things where the geometry says: BEV boxes and points, projected boxes in camera images."""
import numpy as np
from PIL import Image

from perception3d.core.camera import CameraModel
from perception3d.core.detections import Detections3D
from perception3d.core.geometry import invert_transform, make_transform
from perception3d.core.voxels import VoxelGrid
from perception3d.viz.bev import BevView, draw_boxes, draw_motion, draw_points, occupancy_top_view
from perception3d.viz.camera import projected_box_edges
from perception3d.viz.figure import CameraFrame, FrameData, render_frame

# Optical camera looking along base_link +x: optical z = x, optical x = -y, optical y = -z.
R_BASE_CAM = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)
T_BASE_CAM = make_transform(R_BASE_CAM, [0, 0, 1.5])
CAM = CameraModel(np.array([[500, 0, 320], [0, 500, 180], [0, 0, 1]]), 640, 360, frame_id="CAM_FRONT")


def test_bev_maps_forward_up_and_left_left():
    view = BevView(half_extent_m=10, px_per_m=10)
    col, row = view.to_pixels([[5.0, 2.0]])[0]
    assert (col, row) == (80.0, 50.0)  # 2 m left of centre column 100, 5 m above centre row 100


def test_bev_box_outline_lands_on_the_box_footprint():
    view = BevView(half_extent_m=10, px_per_m=10)
    image = Image.new("RGB", (view.size_px, view.size_px))
    draw_boxes(image, view, Detections3D([[5, -3, 0]], [[4, 2, 1.5]], [0.0], ["car"], [1]), (0, 255, 0), width=1)
    pixels = np.asarray(image)
    ys, xs = np.nonzero(pixels[..., 1])
    # Footprint x in [3, 7], y in [-4, -2] -> rows [30, 70], cols [120, 140].
    assert ys.min() >= 29 and ys.max() <= 71 and xs.min() >= 119 and xs.max() <= 141
    assert pixels[30, 125, 1] == 255 and pixels[60, 125, 1] == 0  # front edge drawn, interior empty
    assert pixels[40, 130, 1] == 255  # heading line from the centre towards the front face


def test_bev_motion_arrow_runs_from_the_centre_to_where_the_box_is_in_one_second():
    view = BevView(half_extent_m=10, px_per_m=10)
    image = Image.new("RGB", (view.size_px, view.size_px))
    dets = Detections3D([[2, 0, 0], [-5, 5, 0]], [[4, 2, 1.5]] * 2, [0.0, 0.0], ["car", "car"], [1, 1],
                        velocities=[[5.0, 0.0], [np.nan, np.nan]])
    draw_motion(image, view, dets, (0, 255, 0), width=1)
    ys, xs = np.nonzero(np.asarray(image)[..., 1])
    # From (2, 0) to (7, 0): column 100, rows 80 down to 30; the head's strokes reach back 0.8 m from the tip
    assert ys.min() >= 29 and ys.max() <= 81 and xs.min() >= 95 and xs.max() <= 105
    assert {30, 55, 80} <= set(ys[xs == 100].tolist())
    assert not (xs < 95).any()  # the box without a velocity has no arrow


def test_points_are_painted_at_their_position():
    view = BevView(half_extent_m=10, px_per_m=10)
    canvas = np.zeros((200, 200, 3), np.uint8)
    draw_points(canvas, view, np.array([[0.05, 0.05], [50, 50]]), np.array([[255, 0, 0], [0, 255, 0]]))
    assert canvas[99, 99].tolist() == [255, 0, 0] and canvas.sum() == 255


def test_occupancy_top_view_shows_the_top_class():
    grid = VoxelGrid((-10.0, -10.0, -2.0), 1.0, (20, 20, 4))
    vol = np.zeros(grid.shape, np.uint8)
    vol[15, 10, 0] = 11  # road below
    vol[15, 10, 2] = 4  # car above it
    vol[:, :5, :] = 255
    view = BevView(half_extent_m=10, px_per_m=1)
    top = occupancy_top_view(vol, grid, view)
    from perception3d.core.classes import LIDARSEG_COLORS
    row, col = view.to_pixels([[5.5, 0.5]])[0].astype(int)[::-1]
    assert top[row, col].tolist() == LIDARSEG_COLORS[4].tolist()
    assert top[10, 17].tolist() == [35, 35, 35]  # y = -7.5 is unobserved
    assert top[10, 10].tolist() == [0, 0, 0]  # free


def test_projected_box_edges_match_projected_corners_and_skip_boxes_behind():
    T_cam_base = invert_transform(T_BASE_CAM)
    ahead = Detections3D([[10, 0, 1.5]], [[2, 2, 2]], [0.0], ["car"], [1])
    [segments] = projected_box_edges(CAM, T_cam_base, ahead)
    assert segments.shape == (12, 2, 2)
    # The near face (x = 9) spans u in 320 +- 500 * 1 / 9.
    assert abs(segments[..., 0].min() - (320 - 500 / 9)) < 1e-9
    behind = Detections3D([[-10, 0, 1.5]], [[2, 2, 2]], [0.0], ["car"], [1])
    assert projected_box_edges(CAM, T_cam_base, behind)[0].size == 0
    straddling = Detections3D([[0.5, 0, 1.5]], [[3, 2, 2]], [0.0], ["car"], [1])
    segs = projected_box_edges(CAM, T_cam_base, straddling)[0]
    assert 0 < len(segs) < 12 + 1 and np.isfinite(segs).all()


def test_render_frame_composes_bev_and_cameras():
    rgb = np.full((360, 640, 3), 50, np.uint8)
    frame = FrameData(title="frame 0", points=np.array([[5.0, 0, 0]]),
                      ground_truth=Detections3D([[10, 0, 1.5]], [[2, 2, 2]], [0.0], ["car"], [1]),
                      cameras={"CAM_FRONT": CameraFrame(rgb, CAM, invert_transform(T_BASE_CAM))})
    image = render_frame(frame, camera_width=320)
    assert image.width == 600 + 3 * 320 + 150
    pixels = np.asarray(image)
    # The front tile (column 1 of the grid) contains green box edges.
    tile = pixels[30:30 + 180, 600 + 320:600 + 640]
    assert (tile[..., 1] == 255).any() and (tile[..., 0] == 0).any()


def test_detector2d_boxes_are_matched_to_their_image_by_header_stamp():
    """detector2d logs all cameras of a firing cycle at one time; each message's header carries its image's stamp."""
    from perception3d.core.detections import Detections2D
    from perception3d.msgs.bag import BagMessage
    from perception3d.msgs.detections import detections2d_to_msg
    from perception3d.msgs.typestore import typestore
    from perception3d.viz.bag_frame import detections_of_image

    def logged(log_ns, image_ns, x0):
        msg = detections2d_to_msg(Detections2D(np.array([[x0, 10.0, x0 + 20, 40]]), ["car"], np.ones(1),
                                               "CAM_FRONT", image_ns))
        msgtype = "vision_msgs/msg/Detection2DArray"
        return BagMessage("/perception/CAM_FRONT/detections", log_ns, msgtype,
                          bytes(typestore().serialize_cdr(msg, msgtype)))

    cycle_ns = 1_000_000_000
    # image at +8 ms logged with its cycle (at the cycle's first stamp); the next cycle's message is logged nearer
    messages = [logged(cycle_ns, cycle_ns + 8_000_000, 100.0),
                logged(cycle_ns + 15_000_000, cycle_ns + 15_000_000, 300.0)]
    found = detections_of_image(messages, cycle_ns + 8_000_000)
    assert found is not None and found.boxes_xyxy[0, 0] == 100.0
    assert detections_of_image(messages, cycle_ns + 50_000_000) is None
