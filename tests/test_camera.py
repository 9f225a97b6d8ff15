"""The camera conventions of geometry/camera.py, with known answers."""

from __future__ import annotations

import numpy as np

from dynrec.geometry.camera import (
    intrinsics,
    look_at,
    pixel_centers,
    project,
    unproject,
    w2c_in_other_world,
)


def test_pixel_centres_are_at_half():
    c = pixel_centers(2, 3)
    assert c.shape == (2, 3, 2)
    np.testing.assert_allclose(c[0, 0], [0.5, 0.5])
    np.testing.assert_allclose(c[1, 2], [2.5, 1.5])


def test_point_on_axis_projects_to_principal_point_and_depth_is_z():
    K = intrinsics(50, 50, 32, 24)
    xy, z = project(np.array([0.0, 0.0, 4.0]), K, np.eye(4))
    np.testing.assert_allclose(xy, [32, 24])
    assert z == 4.0
    xy, _ = project(np.array([1.0, 0.5, 2.0]), K, np.eye(4))  # x right, y down
    np.testing.assert_allclose(xy, [32 + 25, 24 + 12.5])


def test_look_at_is_opencv():
    w2c = look_at(np.array([0.0, -5.0, 1.0]), np.array([0.0, 0.0, 1.0]))
    R = w2c[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) > 0
    cam = R @ np.array([0.0, 0.0, 1.0]) + w2c[:3, 3]
    np.testing.assert_allclose(cam, [0, 0, 5], atol=1e-12)  # target straight ahead
    up = R @ np.array([0.0, 0.0, 2.0]) + w2c[:3, 3]
    assert up[1] < 0  # world up is image up, i.e. negative y


def test_look_at_rows_and_looking_along_up():
    """Rows x = z x up, y = z x x, z forward; looking along up still gives a rotation with the
    target straight ahead (x = z x e_y, or z x e_x when that vanishes as well)."""
    eye, target, up = np.array([1.0, 2.0, 3.0]), np.array([4.0, -2.0, 3.0]), np.array([0.0, 0.0, 1.0])
    R = look_at(eye, target, up)[:3, :3]
    np.testing.assert_allclose(R[2], [0.6, -0.8, 0.0])
    np.testing.assert_allclose(R[0], [-0.8, -0.6, 0.0])
    np.testing.assert_allclose(R[1], [0.0, 0.0, -1.0])
    for up, right in (([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]), ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0])):
        w2c = look_at(np.zeros(3), -np.array(up), np.array(up))  # looking straight down
        np.testing.assert_allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(w2c[2, :3], -np.array(up))
        np.testing.assert_allclose(w2c[0, :3], right, atol=1e-12)


def test_unproject_inverts_project():
    rng = np.random.default_rng(0)
    K = intrinsics(80, 70, 40, 30)
    w2c = look_at(np.array([1.0, -4.0, 2.0]), np.zeros(3))
    pts = rng.normal(size=(50, 3))
    xy, z = project(pts, K, w2c)
    np.testing.assert_allclose(unproject(xy, z, K, w2c), pts, atol=1e-9)


def test_cameras_move_between_worlds_with_a_similarity():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    K = intrinsics(50.0, 50.0, 32.0, 24.0)
    w2c = look_at(np.array([0.0, -4.0, 1.0]), np.zeros(3))
    a_to_b = np.eye(4)
    a_to_b[:3, :3] = 2.5 * Rotation.from_euler("xyz", [0.3, -0.2, 1.0]).as_matrix()
    a_to_b[:3, 3] = [1.0, -2.0, 0.5]
    points_a = rng.normal(scale=0.5, size=(20, 3))
    points_b = points_a @ a_to_b[:3, :3].T + a_to_b[:3, 3]
    w2c_b = w2c_in_other_world(w2c, a_to_b)
    np.testing.assert_allclose(w2c_b[:3, :3] @ w2c_b[:3, :3].T, np.eye(3), atol=1e-12)
    xy_a, z_a = project(points_a, K, w2c)
    xy_b, z_b = project(points_b, K, w2c_b)
    np.testing.assert_allclose(xy_b, xy_a, atol=1e-9)
    np.testing.assert_allclose(z_b, 2.5 * z_a, rtol=1e-9)
