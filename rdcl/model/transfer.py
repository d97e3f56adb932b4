"""Transfer of a pre-trained encoder into the general encoder G, and freezing G."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def _general(net: nn.Module) -> nn.Module:
    general = getattr(net, "general", None)
    if not isinstance(general, nn.Module):
        raise TypeError(
            f"expected a network with a general encoder (dual or multi_encoder), found "
            f"{type(net).__name__}"
        )
    return general


def load_general_encoder(net: nn.Module, source: nn.Module | Mapping[str, torch.Tensor]) -> None:
    """Copy pre-trained encoder weights into ``net.general`` (strict: every key must match).

    Args:
        net: a dual or multi-encoder network.
        source: a single-encoder network (its ``encoder`` is used), an encoder module, a
            single-encoder state dict (keys ``encoder.*``; ``decoder.*`` keys are ignored) or an
            encoder state dict.

    Raises:
        TypeError: ``net`` has no general encoder.
        RuntimeError: the weights do not fit G's architecture (missing/unexpected keys, shapes).
    """
    general = _general(net)
    if isinstance(source, nn.Module):
        source = getattr(source, "encoder", source).state_dict()
    if any(k.startswith("encoder.") for k in source):
        source = {k[len("encoder.") :]: v for k, v in source.items() if k.startswith("encoder.")}
    general.load_state_dict(source, strict=True)


def freeze_general(net: nn.Module) -> None:
    """Stop every parameter of ``net.general`` from training (``requires_grad=False``).

    G has no running statistics (InstanceNorm), so train/eval mode does not change its output.
    """
    _general(net).requires_grad_(False)
