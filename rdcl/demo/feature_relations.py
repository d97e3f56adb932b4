"""Relation matrices of a trained dual-encoder network on lesion-centred batches (paper Fig. 4
and 5): R_G(X_n), R_G(X_c) and R_T(X_c)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from rdcl.data.datasets.layout import load_case, load_dataset
from rdcl.data.datasets.spec import DatasetSpec
from rdcl.data.preprocessing.preprocess import preprocess_case
from rdcl.errors import DatasetError
from rdcl.inference.predictor import Predictor
from rdcl.kernels import relation_matrix
from rdcl.report import RG_COVID, RG_NONCOVID, RT_COVID


def crop_around(x: np.ndarray, centre: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """(1, *spatial) -> (1, *patch) around ``centre``, padded with the minimum where too small."""
    pad = [(0, 0)] + [(0, max(p - s, 0)) for p, s in zip(patch, x.shape[1:], strict=True)]
    x = np.pad(x, pad, mode="constant", constant_values=float(x.min()))
    start = [
        int(np.clip(round(c) - p // 2, 0, s - p))
        for c, p, s in zip(centre, patch, x.shape[1:], strict=True)
    ]
    return x[(slice(None), *(slice(a, a + p) for a, p in zip(start, patch, strict=True)))]


def lesion_batch(root: Path | DatasetSpec, predictor: Predictor, n: int) -> torch.Tensor:
    """A (n, 1, *patch) batch of the first ``n`` training cases of ``root`` (a dataset folder or
    a loaded ``DatasetSpec``), each patch centred on its lesion and preprocessed as
    ``predictor``'s training data was (a case's own intensity window first, as in training)."""
    data_cfg = predictor.config.data
    spec = root if isinstance(root, DatasetSpec) else load_dataset(root)
    patches = []
    for case in spec.cases[:n]:
        image, label, geometry = load_case(case)
        if label is None:
            raise DatasetError(f"case {case.name} of {root} has no label; expected a labelled case")
        x, y, _ = preprocess_case(
            image,
            geometry,
            data_cfg,
            predictor.intensity,
            label,
            normalization=predictor.normalization,
            window=case.window if case.window is not None else predictor.window,
        )
        fg = np.argwhere(y > 0)
        centre = fg.mean(axis=0) if fg.size else np.asarray(y.shape) / 2
        patches.append(crop_around(x, centre, data_cfg.patch_size))
    return torch.from_numpy(np.stack(patches).astype(np.float32))


def relation_matrices(
    rdcl_ckpt: Path, pretrain_ckpt: Path, covid_root: Path, general_root: Path, n: int
) -> dict[str, np.ndarray]:
    """R_G(X_n), R_G(X_c), R_T(X_c) (each (C, C)) of the trained dual-encoder network.

    X_c: ``n`` COVID training cases preprocessed as in the rdcl run; X_n: ``n`` non-COVID cases
    preprocessed as in stage 1 (the non-COVID set's own statistics), as in training.
    """
    rdcl = Predictor.from_checkpoint(rdcl_ckpt, device="cpu")
    x_c = lesion_batch(covid_root, rdcl, n)
    x_n = lesion_batch(general_root, Predictor.from_checkpoint(pretrain_ckpt, device="cpu"), n)
    return network_relations(rdcl.network, x_n, x_c)


def network_relations(
    net: nn.Module, x_n: torch.Tensor, x_c: torch.Tensor
) -> dict[str, np.ndarray]:
    """R_G(X_n), R_G(X_c), R_T(X_c) (keys ``rdcl.report.RG_NONCOVID``, ``RG_COVID``,
    ``RT_COVID``; each (C, C) float32) of a dual-encoder network ``net`` on the batches ``x_n``
    and ``x_c`` (B, 1, *patch). ``net`` is put in eval mode; no gradients."""
    net.eval()
    with torch.no_grad():
        covid = net.forward_with_features(x_c)
        g_n = net.general_features(x_n)
    return {
        RG_NONCOVID: relation_matrix(g_n).numpy(),
        RG_COVID: relation_matrix(covid.general).numpy(),
        RT_COVID: relation_matrix(covid.target).numpy(),
    }
