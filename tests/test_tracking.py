"""Query trajectories of a trained scene (Shape of Motion's evaluation protocol) on a scene
whose answer is known: a foreground Gaussian translating in front of a static wall."""

from __future__ import annotations

import numpy as np
import torch

from dynrec.geometry.camera import intrinsics, look_at
from dynrec.geometry.lift import project_points
from dynrec.geometry.se3 import make_transform
from dynrec.model import Gaussians, MotionTree, TreeConfig
from dynrec.model.scene import DynamicScene
from dynrec.model.tracking import query_trajectories, sample_image


def _scene(T: int) -> DynamicScene:
    # a wall of background Gaussians at y = 3 and an opaque foreground blob at the origin (three
    # coincident Gaussians, so that nothing of the wall shows through its centre)
    xs, zs = np.meshgrid(np.linspace(-3, 3, 31), np.linspace(-2, 2, 21))
    wall = np.stack([xs.ravel(), np.full(xs.size, 3.0), zs.ravel()], -1)
    points = torch.from_numpy(np.concatenate([wall, np.zeros((3, 3))])).float()
    G = len(points)
    fg = torch.zeros(G, dtype=torch.bool)
    fg[-3:] = True
    g = Gaussians.from_points(points, torch.full((G, 3), 0.5), fg, opacity=0.99)
    with torch.no_grad():
        g.log_scales[-3:] = np.log(0.15)
    shift = torch.stack([make_transform(torch.eye(3), torch.tensor([0.1 * t, 0.0, 0.05 * t])) for t in range(T)])
    tree = MotionTree.from_bases(shift[None], torch.zeros(1, 3), torch.ones(1, 1), torch.ones(1), TreeConfig(skin_k=1))
    return DynamicScene(g, tree)


def test_query_trajectories_follow_the_surface_under_the_pixel():
    T, W, H = 4, 64, 48
    scene = _scene(T)
    K = torch.from_numpy(intrinsics(50.0, 50.0, W / 2, H / 2)).float().expand(T, 3, 3)
    w2c = torch.from_numpy(look_at(np.array([0.0, -4.0, 0.0]), np.zeros(3))).float().expand(T, 4, 4)
    # query 1: the moving Gaussian's centre at frame 2; query 2: a wall pixel at frame 0
    centre_2 = torch.tensor([[0.2, 0.0, 0.1]])
    xy_fg = project_points(centre_2, K[0], w2c[0])[0]
    xy_wall = torch.tensor([[20.0, 16.0]])
    xyz, ok = query_trajectories(scene, K, w2c, W, H, torch.tensor([2, 0]), torch.cat([xy_fg, xy_wall]),
                                 frames_per_pass=3)
    assert ok.tolist() == [True, True]
    truth = torch.tensor([[0.1 * t, 0.0, 0.05 * t] for t in range(T)])
    torch.testing.assert_close(xyz[0], truth, atol=2e-3, rtol=0)  # the opaque blob's own path
    assert torch.allclose(xyz[1], xyz[1, :1].expand(T, 3))  # the wall stays put
    assert abs(float(xyz[1, 0, 1]) - 3.0) < 0.05
    # the foreground alone: the blob is still followed, the wall pixel has nothing to follow
    fg_xyz, fg_ok = query_trajectories(scene, K, w2c, W, H, torch.tensor([2, 0]), torch.cat([xy_fg, xy_wall]),
                                       foreground_only=True)
    assert fg_ok.tolist() == [True, False]
    torch.testing.assert_close(fg_xyz[0], truth, atol=2e-3, rtol=0)


def test_sample_image_uses_pixel_centres():
    image = torch.arange(12.0).reshape(3, 4, 1)
    xy = torch.tensor([[0.5, 0.5], [1.5, 2.5], [1.0, 0.5]])
    torch.testing.assert_close(sample_image(image, xy)[:, 0], torch.tensor([0.0, 9.0, 0.5]))


def test_deform_points_cache_gives_the_same_motion_until_refreshed():
    T = 4
    scene = _scene(T)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    fresh = scene.deform_points(pts, torch.arange(T))
    cached = scene.deform_points(pts, torch.arange(T), "tracks")
    again = scene.deform_points(pts, torch.arange(T), "tracks")
    torch.testing.assert_close(cached, fresh)
    torch.testing.assert_close(again, fresh)
    assert "tracks" in scene._point_skin
    scene.refresh_skinning()
    assert scene._point_skin == {}
