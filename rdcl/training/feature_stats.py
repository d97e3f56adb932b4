"""Health of the general encoder's features: effective rank and RMS (issue 17, item 4).

In stage 2 G's only loss is L_G = lambda_G d(R_G(X_n), R_G(X_c)). A collapse of all channels into
one feature minimises it (every relation matrix is then alike), and R is invariant to the
features' overall scale, so nothing but weight decay acts on that scale. Two numbers watch for
both failures (``docs/relation_weights.md``, "Keeping G alive"):

- **effective rank** of the channels x positions matrix A (C x N, N = batch x positions): with
  s_i its singular values and p_i = s_i^2 / sum_j s_j^2, erank = exp(-sum_i p_i log p_i)
  (p log p = 0 for p = 0). 1 when one feature (one direction in channel space) carries
  everything, C when the C channels are orthogonal with equal energy. The features are not
  centred: a constant offset of every channel counts as one direction.
- **RMS** sqrt(mean(F^2)) over batch, channels and positions (the features' scale).

This module is the one home of both definitions: training logs them (``g_rank``, ``g_rms`` in
``log.jsonl``, :class:`GeneralFeatureProbe`) and the study quotes them for trained networks.
"""

from __future__ import annotations

import torch

GRAM_EPS = 1e-30
"""Floor of the Gram trace in :func:`effective_rank` (all-zero features give rank 0, not NaN)."""


def channel_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) features -> the (C, B * prod(spatial)) channels x positions matrix
    (every sample's positions side by side; float32 unless the input is float64)."""
    if features.dim() < 2:
        raise ValueError(f"expected features (B, C, *spatial), found shape {tuple(features.shape)}")
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    c = features.shape[1]
    return features.detach().to(dtype).transpose(0, 1).reshape(c, -1)


def effective_rank(features: torch.Tensor) -> torch.Tensor:
    """Effective rank (module docstring) of ``features`` (B, C, *spatial), as a 0-dim tensor on
    the features' device, in [0, C] (0 only for all-zero features); no host synchronisation of
    its own (but the eigen-solver of a CUDA backend may wait for the device).

    The squared singular values are the eigenvalues of the C x C Gram A A^T (cheaper than an SVD
    of A when N > C); negative round-off eigenvalues are clamped to 0. No gradient.
    """
    with torch.no_grad():
        a = channel_matrix(features)
        gram = a @ a.T
        eig = torch.linalg.eigvalsh(gram).clamp_min(0)
        p = eig / eig.sum().clamp_min(GRAM_EPS)
        entropy = -torch.special.xlogy(p, p).sum()
        return torch.where(eig.sum() > 0, entropy.exp(), torch.zeros_like(entropy))


def feature_rms(features: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(F^2)) over every element of ``features`` (B, C, *spatial): a 0-dim float32
    tensor on the features' device (same units as the features); no gradient."""
    with torch.no_grad():
        return features.detach().float().square().mean().sqrt()


class GeneralFeatureProbe:
    """Keeps a reference to the last step's G(X_c) bottleneck and, when asked, returns its
    effective rank and RMS.

    ``keep`` costs nothing (no copy, no computation); :meth:`stats` runs only on the steps the
    training loop logs them (``train.feature_stats_every``), under ``no_grad``, and returns
    0-dim tensors so that the loop sends them to the host in its one transfer of the step.
    """

    KEYS = ("g_rank", "g_rms")
    """The log keys :meth:`stats` fills."""

    def __init__(self) -> None:
        self._features: torch.Tensor | None = None

    def keep(self, features: torch.Tensor | None) -> None:
        """Remember this step's G(X_c) bottleneck (B, C, *spatial); ``None`` forgets."""
        self._features = None if features is None else features.detach()

    def stats(self) -> dict[str, torch.Tensor]:
        """``{"g_rank": erank, "g_rms": rms}`` of the kept features (0-dim tensors), empty when
        none is kept."""
        f = self._features
        if f is None:
            return {}
        return {"g_rank": effective_rank(f), "g_rms": feature_rms(f)}
