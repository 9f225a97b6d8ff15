"""Known-answer and gradient tests of the rasterizer (CPU reference; gsplat parity on CUDA)."""

from __future__ import annotations

import math

import pytest
import torch

from dynrec.render import RenderOutput, rasterize
from dynrec.render.reference import (
    ALPHA_THRESHOLD,
    TRANSMITTANCE_MIN,
    intersect_tiles,
    project_gaussians,
    rasterize_reference,
)

F64 = torch.float64


def intrinsics(
    fx: float, fy: float, cx: float, cy: float, dtype: torch.dtype = F64
) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)


def random_scene(
    n: int, width: int, height: int, seed: int = 0, dtype: torch.dtype = F64
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """N Gaussians spread over the view of a camera with a slightly rotated w2c."""
    g = torch.Generator().manual_seed(seed)
    f = 0.9 * width
    z = torch.rand(n, generator=g, dtype=dtype) * 3 + 2
    x = (torch.rand(n, generator=g, dtype=dtype) - 0.5) * width / f * z * 1.2
    y = (torch.rand(n, generator=g, dtype=dtype) - 0.5) * height / f * z * 1.2
    cam = torch.stack([x, y, z], dim=-1)
    angle = 0.1
    R = torch.tensor(
        [
            [math.cos(angle), 0.0, math.sin(angle)],
            [0.0, 1.0, 0.0],
            [-math.sin(angle), 0.0, math.cos(angle)],
        ],
        dtype=dtype,
    )
    t = torch.tensor([0.1, -0.05, 0.2], dtype=dtype)
    viewmat = torch.eye(4, dtype=dtype)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = t
    means = (cam - t) @ R  # world points that land at `cam` in the camera frame
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=dtype) * 1.5 - 4.0) * z[:, None]
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.8 + 0.1
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    K = intrinsics(f, f, width / 2 + 0.3, height / 2 - 0.2, dtype)
    return [means, quats, scales, opacities, colors], viewmat, K


def dense_oracle(
    params: list[torch.Tensor],
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pixel against every Gaussian, plain autograd: an independent check of the tiled path.

    It shares the projection and the tile rectangles (a pixel only sees Gaussians whose
    tile box covers the pixel's tile, as in gsplat) but composites densely and sequentially
    (cumprod / prod) without the custom backward.
    """
    means, quats, scales, opacities, colors = params
    proj = project_gaussians(means, quats, scales, opacities, viewmat, K, width, height)
    bins = intersect_tiles(proj.means2d, proj.radii, proj.depths, width, height, 16)
    n = means.shape[0]
    member = torch.zeros(bins.n_tiles, n, dtype=torch.bool)
    member[bins.tile_ids, bins.flatten_ids] = True
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    tile = (ys // 16) * bins.tile_width + xs // 16
    order = torch.sort(proj.depths.detach(), stable=True).indices
    seen = member[tile.flatten()][:, order]  # [HW, N]
    px = xs.flatten().to(means.dtype) + 0.5
    py = ys.flatten().to(means.dtype) + 0.5
    m, c, o = proj.means2d[order], proj.conics[order], opacities[order]
    feats = torch.cat([colors, proj.depths[:, None]], dim=-1)[order]
    dx = m[None, :, 0] - px[:, None]
    dy = m[None, :, 1] - py[:, None]
    sigma = 0.5 * (c[None, :, 0] * dx * dx + c[None, :, 2] * dy * dy) + c[None, :, 1] * dx * dy
    a = torch.clamp_max(o[None] * torch.exp(-sigma), 0.999)
    a = torch.where((sigma >= 0) & (a >= ALPHA_THRESHOLD) & seen, a, torch.zeros_like(a))
    live = torch.cumprod(1 - a, dim=-1) > TRANSMITTANCE_MIN
    a = torch.where(live, a, torch.zeros_like(a))
    T = torch.cumprod(torch.cat([torch.ones_like(a[:, :1]), 1 - a[:, :-1]], dim=-1), dim=-1)
    out = (a * T) @ feats
    T_end = torch.prod(1 - a, dim=-1)
    if background is not None:
        out = out + T_end[:, None] * torch.cat([background, background.new_zeros(1)])
    alpha = (1 - T_end).reshape(height, width, 1)
    D = colors.shape[1]
    rgb = out[:, :D].reshape(height, width, D)
    depth = out[:, D:].reshape(height, width, 1) / alpha.clamp_min(1e-10)
    return rgb, depth, alpha


def single(
    center_cam: tuple[float, float, float],
    scale: float,
    opacity: float,
    color: tuple[float, float, float],
) -> list[torch.Tensor]:
    return [
        torch.tensor([center_cam], dtype=F64),
        torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64),
        torch.full((1, 3), scale, dtype=F64),
        torch.tensor([opacity], dtype=F64),
        torch.tensor([color], dtype=F64),
    ]


def cat_scenes(*scenes: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.cat(parts) for parts in zip(*scenes)]


def test_output_structure_and_info_keys() -> None:
    params, viewmat, K = random_scene(50, 40, 30, dtype=torch.float32)
    params = [p.requires_grad_(True) for p in params]
    out = rasterize(*params, viewmat, K, 40, 30)
    assert isinstance(out, RenderOutput)
    assert (
        out.rgb.shape == (30, 40, 3)
        and out.depth.shape == (30, 40, 1)
        and out.alpha.shape == (30, 40, 1)
    )
    info = out.info
    for key in (
        "means2d",
        "radii",
        "width",
        "height",
        "n_cameras",
        "gaussian_ids",
        "depths",
        "conics",
    ):
        assert key in info
    assert info["means2d"].shape == (1, 50, 2)
    assert info["radii"].shape == (1, 50, 2) and info["radii"].dtype == torch.int32
    assert (info["width"], info["height"], info["n_cameras"]) == (40, 30, 1)
    assert info["gaussian_ids"] is None
    # What DefaultStrategy does: retain the 2D means' grad, backprop, read it.
    info["means2d"].retain_grad()
    out.rgb.sum().backward()
    grad = info["means2d"].grad
    assert grad is not None and grad.shape == (1, 50, 2) and torch.isfinite(grad).all()
    visible = (info["radii"] > 0).all(-1)
    assert grad[~visible].abs().sum() == 0


def test_matches_dense_oracle_forward_and_backward() -> None:
    width, height = 40, 36  # 3x3 tiles, partial ones on the right and bottom
    params, viewmat, K = random_scene(120, width, height, seed=3)
    params = [p.requires_grad_(True) for p in params]
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=F64, requires_grad=True)
    out = rasterize(*params, viewmat, K, width, height, background=bg)
    rgb, depth, alpha = dense_oracle(params, viewmat, K, width, height, background=bg)
    torch.testing.assert_close(out.rgb, rgb, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.alpha, alpha, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.depth, depth, rtol=0, atol=1e-10)
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(t.shape, generator=g, dtype=F64) for t in (rgb, depth, alpha)]

    def loss(r: torch.Tensor, d: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return (r * w[0]).sum() + (d * w[1]).sum() + (a * w[2]).sum()

    ours = torch.autograd.grad(loss(out.rgb, out.depth, out.alpha), [*params, bg])
    ref = torch.autograd.grad(loss(rgb, depth, alpha), [*params, bg])
    for name, a, b in zip(
        ["means", "quats", "scales", "opacities", "colors", "background"], ours, ref
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)


def test_gradients_match_central_differences() -> None:
    width, height = 24, 20
    scene = cat_scenes(
        single((0.05, 0.02, 2.0), 0.12, 0.7, (0.9, 0.2, 0.1)),
        single((-0.2, 0.1, 2.5), 0.15, 0.6, (0.1, 0.8, 0.3)),
        single((0.25, -0.15, 3.0), 0.2, 0.8, (0.2, 0.3, 0.9)),
    )
    scene[1] = torch.tensor(
        [[0.9, 0.2, -0.3, 0.1], [0.7, -0.1, 0.4, 0.3], [0.5, 0.5, 0.1, -0.6]], dtype=F64
    )
    scene[2] = torch.tensor([[0.12, 0.05, 0.08], [0.15, 0.09, 0.2], [0.2, 0.1, 0.07]], dtype=F64)
    params = [p.clone().requires_grad_(True) for p in scene]
    bg = torch.tensor([0.3, 0.3, 0.3], dtype=F64, requires_grad=True)
    K = intrinsics(30.0, 28.0, 12.2, 9.7)
    viewmat = torch.eye(4, dtype=F64)
    viewmat[:3, 3] = torch.tensor([0.02, -0.01, 0.1], dtype=F64)
    g = torch.Generator().manual_seed(0)
    w_rgb = torch.randn(height, width, 3, generator=g, dtype=F64)
    w_depth = torch.randn(height, width, 1, generator=g, dtype=F64)
    w_alpha = torch.randn(height, width, 1, generator=g, dtype=F64)

    def loss(*inputs: torch.Tensor) -> torch.Tensor:
        *p, b = inputs
        out = rasterize(*p, viewmat, K, width, height, background=b)
        assert (out.alpha > 0).any()
        return (out.rgb * w_rgb).sum() + (out.depth * w_depth).sum() + (out.alpha * w_alpha).sum()

    inputs = [*params, bg]
    analytic = torch.autograd.grad(loss(*inputs), inputs)
    eps = 1e-6
    names = ["means", "quats", "scales", "opacities", "colors", "background"]
    for name, x, ga in zip(names, inputs, analytic):
        numeric = torch.zeros_like(x)
        flat = x.detach().view(-1)
        for i in range(flat.numel()):
            plus = [t.detach().clone() for t in inputs]
            minus = [t.detach().clone() for t in inputs]
            k = names.index(name)
            plus[k].view(-1)[i] += eps
            minus[k].view(-1)[i] -= eps
            numeric.view(-1)[i] = (loss(*plus) - loss(*minus)) / (2 * eps)
        torch.testing.assert_close(ga, numeric, rtol=1e-5, atol=1e-6, msg=name)


def test_gradcheck_fast_mode() -> None:
    scene = cat_scenes(
        single((0.05, 0.0, 2.0), 0.1, 0.6, (0.9, 0.2, 0.1)),
        single((-0.1, 0.08, 2.6), 0.14, 0.7, (0.1, 0.8, 0.3)),
    )
    scene[1] = torch.tensor([[0.9, 0.2, -0.3, 0.1], [0.7, -0.1, 0.4, 0.3]], dtype=F64)
    K = intrinsics(20.0, 20.0, 8.0, 8.0)
    viewmat = torch.eye(4, dtype=F64)

    def fn(*p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = rasterize(*p, viewmat, K, 16, 16)
        return out.rgb, out.depth, out.alpha

    inputs = tuple(p.clone().requires_grad_(True) for p in scene)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_centred_gaussian_peaks_between_the_central_pixels() -> None:
    width, height = 32, 24
    K = intrinsics(40.0, 40.0, width / 2, height / 2)
    out = rasterize(
        *single((0.0, 0.0, 3.0), 0.1, 0.9, (1.0, 1.0, 1.0)),
        torch.eye(4, dtype=F64),
        K,
        width,
        height,
    )
    img = out.rgb[..., 0]
    i, j = height // 2, width // 2
    centre = img[i - 1 : i + 1, j - 1 : j + 1]
    torch.testing.assert_close(centre, centre[0, 0].expand(2, 2), rtol=0, atol=1e-12)
    assert img.max() == pytest.approx(float(centre[0, 0]), abs=1e-12)
    # symmetric about the image centre (which is a pixel corner)
    torch.testing.assert_close(img, img.flip(0).flip(1), rtol=0, atol=1e-12)


def test_offset_gaussian_peaks_at_its_pixel() -> None:
    width, height = 40, 30
    fx, fy, cx, cy = 35.0, 33.0, 20.0, 15.0
    K = intrinsics(fx, fy, cx, cy)
    row, col, z = 7, 26, 2.5
    x = (col + 0.5 - cx) / fx * z
    y = (row + 0.5 - cy) / fy * z
    out = rasterize(
        *single((x, y, z), 0.06, 0.9, (1.0, 0.0, 0.0)), torch.eye(4, dtype=F64), K, width, height
    )
    img = out.rgb[..., 0]
    flat = int(img.argmax())
    assert (flat // width, flat % width) == (row, col)
    assert out.info["means2d"][0, 0].tolist() == pytest.approx([col + 0.5, row + 0.5], abs=1e-12)
    torch.testing.assert_close(img[row, col - 1], img[row, col + 1], rtol=0, atol=1e-12)
    torch.testing.assert_close(img[row - 1, col], img[row + 1, col], rtol=0, atol=1e-12)
    assert img[row, col] == pytest.approx(0.9, abs=1e-12)  # opacity * exp(0) at the exact centre


def test_world_transform_is_applied() -> None:
    """The same Gaussian seen through a translated camera lands where camera.project says."""
    from dynrec.geometry.camera import look_at, project

    width, height = 48, 32
    K = intrinsics(40.0, 40.0, 24.0, 16.0)
    w2c = look_at(
        eye=torch.tensor([2.0, -3.0, 1.0]).numpy(), target=torch.tensor([0.0, 0.0, 0.2]).numpy()
    )
    point = torch.tensor([0.3, 0.1, 0.4], dtype=F64)
    xy, z = project(point.numpy(), K.numpy(), w2c)
    out = rasterize(
        *single(tuple(point.tolist()), 0.03, 0.9, (1.0, 1.0, 1.0)),
        torch.from_numpy(w2c),
        K,
        width,
        height,
    )
    assert out.info["means2d"][0, 0].tolist() == pytest.approx(xy.tolist(), abs=1e-9)
    assert out.info["depths"][0, 0].item() == pytest.approx(float(z), abs=1e-9)
    flat = int(out.alpha[..., 0].argmax())
    assert (flat % width, flat // width) == (int(xy[0]), int(xy[1]))


def test_expected_depth_of_single_gaussian_is_its_z() -> None:
    width, height = 32, 32
    K = intrinsics(30.0, 30.0, 16.0, 16.0)
    z = 3.7
    out = rasterize(
        *single((0.1, -0.1, z), 0.3, 0.5, (0.5, 0.5, 0.5)),
        torch.eye(4, dtype=F64),
        K,
        width,
        height,
    )
    hit = out.alpha[..., 0] > 0
    assert hit.sum() > 20 and (~hit).sum() > 0
    torch.testing.assert_close(out.depth[hit][:, 0], torch.full((int(hit.sum()),), z, dtype=F64))
    assert (out.depth[~hit] == 0).all()


def test_near_gaussian_occludes_far_one_whatever_the_input_order() -> None:
    width, height = 32, 32
    K = intrinsics(30.0, 30.0, 16.0, 16.0)
    red = single((0.0, 0.0, 2.0), 0.5, 0.99, (1.0, 0.0, 0.0))
    blue = single((0.0, 0.0, 4.0), 1.0, 0.99, (0.0, 0.0, 1.0))
    for scene in (cat_scenes(red, blue), cat_scenes(blue, red)):
        out = rasterize(*scene, torch.eye(4, dtype=F64), K, width, height)
        centre = out.rgb[16, 16]
        assert centre[0] > 0.98 and centre[2] < 0.02
        assert out.depth[16, 16, 0].item() == pytest.approx(2.0, abs=0.05)


def test_background_and_culling() -> None:
    width, height = 16, 16
    K = intrinsics(20.0, 20.0, 8.0, 8.0)
    behind = single((0.0, 0.0, -2.0), 0.5, 0.9, (1.0, 0.0, 0.0))
    tiny_opacity = single((0.0, 0.0, 2.0), 0.5, 0.5 / 255, (1.0, 0.0, 0.0))
    outside = single((50.0, 0.0, 2.0), 0.05, 0.9, (1.0, 0.0, 0.0))
    scene = [p.requires_grad_(True) for p in cat_scenes(behind, tiny_opacity, outside)]
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    out = rasterize(*scene, torch.eye(4, dtype=F64), K, width, height, background=bg)
    assert (out.info["radii"] == 0).all()
    torch.testing.assert_close(out.rgb, bg.expand(height, width, 3))
    assert (out.alpha == 0).all() and (out.depth == 0).all()
    (out.rgb.sum() + out.depth.sum()).backward()
    for p in scene:
        assert torch.isfinite(p.grad).all()


def test_far_plane_culls() -> None:
    K = intrinsics(20.0, 20.0, 8.0, 8.0)
    scene = single((0.0, 0.0, 5.0), 0.5, 0.9, (1.0, 0.0, 0.0))
    assert (rasterize(*scene, torch.eye(4, dtype=F64), K, 16, 16, far=4.0).alpha == 0).all()
    assert (rasterize(*scene, torch.eye(4, dtype=F64), K, 16, 16, far=6.0).alpha > 0).any()


def test_opaque_stack_stops_at_transmittance_threshold() -> None:
    """Many opaque layers: alpha saturates at 1 - T with T just above 1e-4 (gsplat's stop rule)."""
    layers = [single((0.0, 0.0, 2.0 + 0.1 * k), 2.0, 0.9, (1.0, 1.0, 1.0)) for k in range(8)]
    K = intrinsics(20.0, 20.0, 8.5, 8.5)  # the means project onto the centre of pixel (8, 8)
    out = rasterize(*cat_scenes(*layers), torch.eye(4, dtype=F64), K, 16, 16)
    T = 1 - out.alpha[8, 8, 0].item()
    # alpha = 0.9 there, so T = 0.1^k; the 4th layer would bring it to 1e-4 (<= 1e-4): excluded.
    assert T == pytest.approx(1e-3, rel=1e-6)


def test_rejects_bad_shapes() -> None:
    params, viewmat, K = random_scene(5, 16, 16)
    with pytest.raises(ValueError, match="quats"):
        rasterize(params[0], params[1][:, :3], *params[2:], viewmat, K, 16, 16)
    with pytest.raises(ValueError, match="background"):
        rasterize(*params, viewmat, K, 16, 16, background=torch.zeros(4, dtype=F64))


def test_float32_close_to_float64() -> None:
    params, viewmat, K = random_scene(200, 48, 40, seed=5)
    out64 = rasterize_reference(*params, viewmat, K, 48, 40)
    out32 = rasterize_reference(*[p.float() for p in params], viewmat.float(), K.float(), 48, 40)
    assert (out32.rgb.double() - out64.rgb).abs().max() < 1e-4
    assert (out32.alpha.double() - out64.alpha).abs().max() < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_parity_on_cuda() -> None:
    pytest.importorskip("gsplat")
    width, height = 96, 72
    params, viewmat, K = random_scene(3000, width, height, seed=11, dtype=torch.float32)
    bg = torch.tensor([0.1, 0.2, 0.3])
    cpu = rasterize(*params, viewmat, K, width, height, background=bg)
    cuda = rasterize(
        *[p.cuda() for p in params], viewmat.cuda(), K.cuda(), width, height, background=bg.cuda()
    )
    assert (cuda.rgb.cpu() - cpu.rgb).abs().max() < 1e-3
    assert (cuda.alpha.cpu() - cpu.alpha).abs().max() < 1e-3
    solid = cpu.alpha[..., 0] > 0.5
    rel = ((cuda.depth.cpu() - cpu.depth)[..., 0][solid] / cpu.depth[..., 0][solid]).abs()
    assert rel.max() < 1e-3
    radii_cpu = cpu.info["radii"]
    radii_cuda = cuda.info["radii"].cpu()
    assert radii_cuda.shape == radii_cpu.shape
    assert (radii_cuda != radii_cpu).any(-1).float().mean() < 0.01
    # gsplat 1.5.3 allocates means2d / depths / conics uninitialised and never writes the
    # entries of culled Gaussians: compare where both drew the Gaussian
    drawn = (radii_cuda > 0).all(-1) & (radii_cpu > 0).all(-1)
    torch.testing.assert_close(
        cuda.info["means2d"].cpu()[drawn], cpu.info["means2d"][drawn], rtol=1e-5, atol=1e-3
    )


def test_projection_known_answer() -> None:
    """Isotropic Gaussian on the optical axis: Sigma2d = ((f s / z)^2 + 0.3) I, gsplat's radii."""
    f, s, z, opacity = 50.0, 0.04, 2.0, 0.6
    scene = single((0.0, 0.0, z), s, opacity, (1.0, 1.0, 1.0))
    means, quats, scales, opacities, _ = scene
    K = intrinsics(f, f, 32.0, 32.0)
    proj = project_gaussians(means, quats, scales, opacities, torch.eye(4, dtype=F64), K, 64, 64)
    var = (f * s / z) ** 2 + 0.3
    torch.testing.assert_close(proj.conics[0], torch.tensor([1 / var, 0.0, 1 / var], dtype=F64))
    extend = min(3.33, math.sqrt(2 * math.log(opacity * 255)))
    r = math.ceil(extend * math.sqrt(var))
    assert proj.radii[0].tolist() == [r, r]
    assert proj.means2d[0].tolist() == [32.0, 32.0]


def test_tile_binning() -> None:
    """A small Gaussian inside one tile is binned once; one on a tile corner, four times."""
    means2d = torch.tensor([[8.0, 8.0], [16.0, 16.0], [40.0, 8.0]], dtype=F64)
    radii = torch.tensor([[3, 3], [3, 3], [0, 0]], dtype=torch.int32)
    depths = torch.tensor([2.0, 1.0, 3.0], dtype=F64)
    bins = intersect_tiles(means2d, radii, depths, 48, 32, 16)
    assert bins.tiles_per_gauss.tolist() == [1, 4, 0]
    # tile 0 holds both visible Gaussians, nearer first
    assert bins.flatten_ids[bins.offsets[0] : bins.offsets[1]].tolist() == [1, 0]


def test_empty_scene_renders_background() -> None:
    def empty(*shape: int) -> torch.Tensor:
        return torch.zeros(*shape, dtype=F64, requires_grad=True)

    bg = torch.tensor([0.2, 0.4, 0.6], dtype=F64)
    K = intrinsics(20.0, 20.0, 8.0, 6.0)
    out = rasterize(
        empty(0, 3),
        empty(0, 4),
        empty(0, 3),
        empty(0),
        empty(0, 3),
        torch.eye(4, dtype=F64),
        K,
        16,
        12,
        background=bg,
    )
    torch.testing.assert_close(out.rgb, bg.expand(12, 16, 3))
    assert (out.alpha == 0).all()


def _cameras(n: int, dtype: torch.dtype = F64) -> tuple[torch.Tensor, torch.Tensor]:
    """n slightly different cameras: viewmats [n, 4, 4] (yawed, shifted), Ks [n, 3, 3]."""
    views, Ks = [], []
    for c in range(n):
        a = 0.05 * c
        v = torch.eye(4, dtype=dtype)
        v[:3, :3] = torch.tensor(
            [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]], dtype=dtype
        )
        v[:3, 3] = torch.tensor([0.1 - 0.05 * c, -0.05, 0.2 + 0.1 * c], dtype=dtype)
        views.append(v)
        Ks.append(intrinsics(36.0 + 2 * c, 35.0, 20.3, 15.8 + c, dtype))
    return torch.stack(views), torch.stack(Ks)


@pytest.mark.parametrize("per_camera", [True, False])
def test_cameras_in_one_call_equal_one_call_per_camera(per_camera: bool) -> None:
    """C cameras in one call (per-camera means / quats as a deformed foreground, or shared)
    give each camera's one-call images, screen-space gradients, radii and input gradients."""
    width, height, C = 40, 30, 3
    params, _, _ = random_scene(150, width, height, seed=7)
    means, quats, scales, opacities, colors = params
    viewmats, Ks = _cameras(C)
    g = torch.Generator().manual_seed(2)
    if per_camera:  # each camera sees its own copy of the Gaussians, moved a little
        means = means + 0.05 * torch.randn(C, *means.shape, generator=g, dtype=F64)
        quats = quats + 0.1 * torch.randn(C, *quats.shape, generator=g, dtype=F64)
    leaves = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors)]
    bg = torch.tensor([0.2, 0.4, 0.6], dtype=F64, requires_grad=True)
    w = [torch.randn(C, height, width, k, generator=g, dtype=F64) for k in (3, 1, 1)]

    def loss(out: RenderOutput, c: slice | int) -> torch.Tensor:
        return (out.rgb * w[0][c]).sum() + (out.depth * w[1][c]).sum() + (out.alpha * w[2][c]).sum()

    batched = rasterize(*leaves, viewmats, Ks, width, height, background=bg)
    assert batched.rgb.shape == (C, height, width, 3) and batched.depth.shape == (C, height, width, 1)
    assert batched.info["means2d"].shape == (C, 150, 2) and batched.info["n_cameras"] == C
    batched.info["means2d"].retain_grad()
    loss(batched, slice(None)).backward()
    grads_batched = [t.grad.clone() for t in (*leaves, bg)]
    for t in (*leaves, bg):
        t.grad = None
    for c in range(C):
        pick = [t[c] if per_camera and k < 2 else t for k, t in enumerate(leaves)]
        one = rasterize(*pick, viewmats[c], Ks[c], width, height, background=bg)
        one.info["means2d"].retain_grad()
        loss(one, c).backward()
        torch.testing.assert_close(batched.rgb[c], one.rgb, rtol=0, atol=1e-12)
        torch.testing.assert_close(batched.depth[c], one.depth, rtol=0, atol=1e-10)
        torch.testing.assert_close(batched.alpha[c], one.alpha, rtol=0, atol=1e-12)
        assert torch.equal(batched.info["radii"][c], one.info["radii"][0])
        torch.testing.assert_close(batched.info["means2d"].grad[c], one.info["means2d"].grad[0], rtol=1e-9, atol=1e-9)
    assert (batched.info["radii"] > 0).all(-1).any(-1).all()  # every camera drew something
    for name, a, t in zip(["means", "quats", "scales", "opacities", "colors", "background"], grads_batched,
                          (*leaves, bg)):
        torch.testing.assert_close(a, t.grad, rtol=1e-9, atol=1e-9, msg=name)


def test_rejects_per_camera_tensors_without_cameras() -> None:
    params, viewmat, K = random_scene(5, 16, 16)
    with pytest.raises(ValueError, match="means"):
        rasterize(params[0][None].expand(2, 5, 3), *params[1:], viewmat, K, 16, 16)
    with pytest.raises(ValueError, match="K"):
        rasterize(*params, viewmat[None].expand(2, 4, 4), K, 16, 16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_cameras_in_one_call_match_reference_and_one_call_each() -> None:
    """gsplat with per-camera Gaussians in its batch dim: each image as gsplat's one-camera
    call and as the reference's (|dRGB| < 1e-3 where drawn)."""
    pytest.importorskip("gsplat")
    width, height, C = 96, 72, 3
    params, _, _ = random_scene(3000, width, height, seed=12, dtype=torch.float32)
    means, quats, scales, opacities, colors = params
    viewmats, Ks = _cameras(C, torch.float32)
    Ks[:, :2] *= 2.2  # 96x72 pixels
    g = torch.Generator().manual_seed(4)
    means = means + 0.02 * torch.randn(C, *means.shape, generator=g)
    bg = torch.tensor([0.1, 0.2, 0.3])
    cpu = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height, background=bg)
    cuda_args = [t.cuda() for t in (means, quats, scales, opacities, colors, viewmats, Ks)]
    gpu = rasterize(*cuda_args, width, height, background=bg.cuda())
    assert gpu.rgb.shape == (C, height, width, 3)
    assert (gpu.rgb.cpu() - cpu.rgb).abs().max() < 1e-3
    assert (gpu.alpha.cpu() - cpu.alpha).abs().max() < 1e-3
    radii = gpu.info["radii"].reshape(C, -1, 2).cpu()
    assert (radii != cpu.info["radii"]).any(-1).float().mean() < 0.01
    for c in range(C):
        one = rasterize(cuda_args[0][c], *cuda_args[1:5], cuda_args[5][c], cuda_args[6][c], width, height,
                        background=bg.cuda())
        torch.testing.assert_close(gpu.rgb[c], one.rgb, rtol=0, atol=1e-5)
        assert torch.equal(radii[c], one.info["radii"][0].cpu())
