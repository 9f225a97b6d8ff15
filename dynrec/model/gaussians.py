"""Canonical 3D Gaussians (HiMoR §3.1), laid out for gsplat's densification strategies.

All per-Gaussian tensors live in one ``nn.ParameterDict`` (:attr:`Gaussians.params`) with
gsplat's key names and raw (pre-activation) values, so it can be handed unchanged to
``gsplat.strategy.DefaultStrategy`` (1.5.3), which requires ``means``, ``scales``, ``quats``
and ``opacities`` and applies its duplicate / split / prune index operations to *every*
entry of the dict:

=============== ========= ======================================================
key             shape     meaning (activation)
=============== ========= ======================================================
``means``       [G, 3]    canonical centres (identity)
``scales``      [G, 3]    log standard deviations (``exp``), as gsplat expects
``quats``       [G, 4]    wxyz rotations, unnormalised (normalised when used)
``opacities``   [G]       opacity logits (``sigmoid``)
``colors``      [G, 3]    RGB logits (``sigmoid``; rendered with ``sh_degree=None``)
``foreground``  [G]       1.0 = dynamic (deformed by the motion model), 0.0 = static.
                          A float ``Parameter`` with ``requires_grad=False``: gsplat
                          copies / splits / removes it with the others and skips it
                          in the optimizers (it has none, and check_sanity only
                          compares *trainable* keys with the optimizers' keys).
``motion_coefs`` [G, M]   optional, only for the ``global-bases`` ablation
                          (:class:`dynrec.model.himor.GlobalBases`).
=============== ========= ======================================================

Each trainable entry gets its own Adam (``make_optimizers``), one param group each, as
gsplat's strategies require; ``param_groups`` gives the same for a single Adam when no
strategy is used. Learning rates default to HiMoR Appendix B.2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from dynrec.geometry.lift import mean_knn_distance

#: Keys gsplat's DefaultStrategy needs in ``params``.
STRATEGY_KEYS = ("means", "scales", "quats", "opacities")


@dataclass
class GaussianLRs:
    """Adam learning rates per parameter (HiMoR Appendix B.2; ``motion_coefs`` as Shape of Motion)."""

    means: float = 1.6e-4
    opacities: float = 1e-2
    scales: float = 5e-3
    quats: float = 1e-3
    colors: float = 1e-2
    motion_coefs: float = 1e-2


def _logit(x: Tensor, eps: float = 1e-4) -> Tensor:
    """Inverse sigmoid of ``x`` clamped to ``[eps, 1 - eps]``."""
    x = x.clamp(eps, 1.0 - eps)
    return torch.log(x) - torch.log1p(-x)


class Gaussians(nn.Module):
    """Canonical Gaussians; see the module docstring for the parameter layout."""

    def __init__(
        self,
        means: Tensor,
        log_scales: Tensor,
        quats: Tensor,
        opacity_logits: Tensor,
        color_logits: Tensor,
        foreground: Tensor,
        motion_coefs: Tensor | None = None,
    ) -> None:
        super().__init__()
        G = means.shape[0]
        shapes = {
            "means": (means, (G, 3)),
            "scales": (log_scales, (G, 3)),
            "quats": (quats, (G, 4)),
            "opacities": (opacity_logits, (G,)),
            "colors": (color_logits, (G, 3)),
            "foreground": (foreground, (G,)),
        }
        for name, (tensor, shape) in shapes.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"Gaussians: {name} has shape {tuple(tensor.shape)}, expected {shape}"
                )
        dtype = means.dtype
        params = {
            name: nn.Parameter(
                tensor.detach().to(dtype).clone(), requires_grad=name != "foreground"
            )
            for name, (tensor, _) in shapes.items()
        }
        if motion_coefs is not None:
            if motion_coefs.ndim != 2 or motion_coefs.shape[0] != G:
                raise ValueError(
                    f"Gaussians: motion_coefs has shape {tuple(motion_coefs.shape)}, expected ({G}, M)"
                )
            params["motion_coefs"] = nn.Parameter(motion_coefs.detach().to(dtype).clone())
        self.params = nn.ParameterDict(params)

    @classmethod
    def from_points(
        cls,
        points: Tensor,
        colors: Tensor,
        foreground: Tensor,
        scale: float | Tensor | None = None,
        opacity: float = 0.1,
        motion_coefs: Tensor | None = None,
    ) -> Gaussians:
        """Isotropic Gaussians at ``points`` [G, 3] with RGB ``colors`` [G, 3] in [0, 1].

        ``foreground`` [G] bool; ``scale``: a standard deviation (float or [G]); ``None``
        uses each point's mean distance to its 3 nearest neighbours (as 3DGS). Rotations
        start at identity and opacities at ``opacity``.
        """
        G = points.shape[0]
        if scale is None:
            s = (
                mean_knn_distance(points.detach(), 3).clamp_min(1e-7)
                if G > 1
                else points.new_ones(G)
            )
        else:
            s = torch.as_tensor(scale, dtype=points.dtype, device=points.device).expand(G)
        quats = points.new_zeros(G, 4)
        quats[:, 0] = 1.0
        return cls(
            means=points,
            log_scales=torch.log(s)[:, None].expand(G, 3),
            quats=quats,
            opacity_logits=_logit(points.new_full((G,), opacity)),
            color_logits=_logit(colors.to(points.dtype)),
            foreground=foreground.to(points.dtype),
            motion_coefs=motion_coefs,
        )

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> Gaussians:
        """Rebuild from :meth:`state_dict` output (any number of Gaussians)."""

        def get(name: str) -> Tensor:
            return state[f"params.{name}"]

        return cls(
            get("means"),
            get("scales"),
            get("quats"),
            get("opacities"),
            get("colors"),
            get("foreground"),
            state.get("params.motion_coefs"),
        )

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def means(self) -> Tensor:
        """[G, 3] canonical centres."""
        return self.params["means"]

    @property
    def log_scales(self) -> Tensor:
        """[G, 3] log standard deviations."""
        return self.params["scales"]

    @property
    def quats(self) -> Tensor:
        """[G, 4] wxyz rotations (unnormalised)."""
        return self.params["quats"]

    @property
    def opacity_logits(self) -> Tensor:
        """[G] opacity logits."""
        return self.params["opacities"]

    @property
    def color_logits(self) -> Tensor:
        """[G, 3] RGB logits."""
        return self.params["colors"]

    @property
    def scales(self) -> Tensor:
        """[G, 3] standard deviations ``exp(log_scales)``."""
        return torch.exp(self.params["scales"])

    @property
    def opacities(self) -> Tensor:
        """[G] opacities in (0, 1)."""
        return torch.sigmoid(self.params["opacities"])

    @property
    def colors(self) -> Tensor:
        """[G, 3] RGB in (0, 1)."""
        return torch.sigmoid(self.params["colors"])

    @property
    def foreground(self) -> Tensor:
        """[G] bool: Gaussians deformed by the motion model."""
        return self.params["foreground"] > 0.5

    @property
    def motion_coefs(self) -> Tensor | None:
        """[G, M] per-Gaussian basis coefficients (``global-bases`` mode) or None."""
        return self.params.get("motion_coefs")

    def trainable_names(self) -> list[str]:
        """Keys of the trainable entries of :attr:`params` (those that get an optimizer)."""
        return [name for name, p in self.params.items() if p.requires_grad]

    def param_groups(self, lrs: GaussianLRs | None = None) -> list[dict]:
        """Adam param groups ``{"params": [p], "lr": lr, "name": key}``, one per trainable entry."""
        table = asdict(lrs or GaussianLRs())
        return [
            {"params": [self.params[n]], "lr": table[n], "name": n} for n in self.trainable_names()
        ]

    def make_optimizers(
        self, lrs: GaussianLRs | None = None, eps: float = 1e-15
    ) -> dict[str, torch.optim.Adam]:
        """One Adam per trainable entry (the ``optimizers`` dict gsplat's strategies expect).

        ``eps = 1e-15`` as in gsplat's examples. Rebuild after replacing :attr:`params` by
        other means than a gsplat strategy (which updates the optimizers itself).
        """
        return {
            g["name"]: torch.optim.Adam([g["params"][0]], lr=g["lr"], eps=eps)
            for g in self.param_groups(lrs)
        }
