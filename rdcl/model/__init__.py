"""rdcl.model: the Table I U-Net builder (encoders, decoder, single/dual/multi-encoder networks)."""

from __future__ import annotations

from .blocks import ConvNormAct, ConvStage, init_weights
from .decoder import Decoder
from .encoder import Encoder
from .networks import (
    KINDS,
    DualEncoderUNet,
    Features,
    MultiEncoderUNet,
    SingleEncoderUNet,
    build_network,
)
from .transfer import freeze_general, load_general_encoder

__all__ = [
    "KINDS",
    "ConvNormAct",
    "ConvStage",
    "Decoder",
    "DualEncoderUNet",
    "Encoder",
    "Features",
    "MultiEncoderUNet",
    "SingleEncoderUNet",
    "build_network",
    "freeze_general",
    "init_weights",
    "load_general_encoder",
]
