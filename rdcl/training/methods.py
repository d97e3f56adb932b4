"""The compared methods (paper Tables II/III) as data: which network, which initialisation, which
losses.

| method | network | initialisation | frozen | losses |
|---|---|---|---|---|
| ``baseline`` | single | scratch | - | L_seg |
| ``pretrain`` | single | whole stage-1 network | - | L_seg (fine-tune everything) |
| ``multi_encoder`` | multi_encoder | G = stage-1 encoder | G | L_seg |
| ``backbone`` | dual | G = stage-1 encoder | G | L_seg |
| ``rdcl_g`` | dual | G = stage-1 encoder | - | L_seg + L_G |
| ``rdcl`` | dual | G = stage-1 encoder | - | L_seg + L_G + L_T |

Interpretation (documented choice): in ``rdcl_g``/``rdcl`` G is trained by L_G only, as Algorithm 1
states; it gets no segmentation loss of its own on X_n in stage 2. G starts as a lesion encoder
(stage 1) and L_G only asks it to relate COVID and non-COVID features the same way, with a small
learning rate under the poly schedule; T and D start from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rdcl.config import METHODS, ModelConfig
from rdcl.errors import ConfigError
from rdcl.model import build_network, freeze_general, load_general_encoder


@dataclass(frozen=True)
class Method:
    """How one method builds, initialises and trains its network.

    Attributes:
        name: the method name (``rdcl.config.METHODS``).
        kind: ``build_network`` kind.
        init: ``"scratch"``, ``"full"`` (whole stage-1 network) or ``"general"`` (stage-1
            encoder into G).
        freeze_general: G gets ``requires_grad=False`` and is left out of the optimiser.
        use_lg: L_G is part of the loss (needs a non-COVID batch every step).
        use_lt: L_T is part of the loss.
    """

    name: str
    kind: str
    init: str
    freeze_general: bool = False
    use_lg: bool = False
    use_lt: bool = False

    @property
    def needs_pretrained(self) -> bool:
        """Whether the method starts from a stage-1 (non-COVID pre-trained) network."""
        return self.init != "scratch"

    @property
    def needs_general_batches(self) -> bool:
        """Whether stage 2 draws a non-COVID batch X_n every step."""
        return self.use_lg


_METHODS = {
    "baseline": Method("baseline", "single", "scratch"),
    "pretrain": Method("pretrain", "single", "full"),
    "multi_encoder": Method("multi_encoder", "multi_encoder", "general", freeze_general=True),
    "backbone": Method("backbone", "dual", "general", freeze_general=True),
    "rdcl_g": Method("rdcl_g", "dual", "general", use_lg=True),
    "rdcl": Method("rdcl", "dual", "general", use_lg=True, use_lt=True),
}


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``; raises ``ValueError`` for an unknown name."""
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; expected one of {METHODS}")
    return _METHODS[name]


def initialise(net: nn.Module, method: Method, pretrained_state: dict | None) -> None:
    """Load the stage-1 weights into ``net`` as ``method`` prescribes, then freeze G if asked.

    Args:
        net: a freshly built network of kind ``method.kind``.
        method: the method.
        pretrained_state: the stage-1 single-encoder ``state_dict`` (required unless
            ``method.init == "scratch"``).

    Raises:
        ValueError: a pre-trained network is needed and none was given.
        RuntimeError: the stage-1 weights do not fit the architecture.
    """
    if method.needs_pretrained and pretrained_state is None:
        raise ConfigError(
            f"method {method.name!r} needs a network pre-trained on non-COVID lesions (stage 1); "
            "pass general datasets or a pretrained checkpoint"
        )
    if method.init == "full":
        net.load_state_dict(pretrained_state, strict=True)
    elif method.init == "general":
        load_general_encoder(net, pretrained_state)
    if method.freeze_general:
        freeze_general(net)


def build_for_method(
    model_cfg: ModelConfig, method: Method, pretrained_state: dict | None
) -> nn.Module:
    """Build the network of ``method`` and initialise it (:func:`initialise`)."""
    net = build_network(model_cfg, kind=method.kind)
    initialise(net, method, pretrained_state)
    return net
