"""Building blocks of the Table I U-Net: conv -> InstanceNorm -> LeakyReLU stages, weight init.

Every block is dimension-generic: ``dim`` 2 builds ``Conv2d``/``InstanceNorm2d``, ``dim`` 3 the 3D
versions. Kernels and strides are tuples in array axis order ((z, y, x) in 3D, (y, x) in 2D).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED_CONV: dict[int, type[nn.Module]] = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_INSTANCE_NORM: dict[int, type[nn.Module]] = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}

HE_NEGATIVE_SLOPE = 1e-2
"""``a`` of the Kaiming-normal initialisation of every conv weight (nnU-Net's He init)."""


def _check_dim(dim: int) -> None:
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, found {dim}")


def conv_nd(
    dim: int, in_channels: int, out_channels: int, kernel: Sequence[int], stride: Sequence[int]
) -> nn.Module:
    """A ``dim``-D convolution with bias and 'same' padding (``kernel // 2`` per axis).

    Output spatial size is ``ceil(input / stride)`` for odd kernels.
    """
    _check_dim(dim)
    padding = tuple(k // 2 for k in kernel)
    return _CONV[dim](
        in_channels, out_channels, tuple(kernel), tuple(stride), padding=padding, bias=True
    )


def transposed_conv_nd(
    dim: int, in_channels: int, out_channels: int, stride: Sequence[int]
) -> nn.Module:
    """A ``dim``-D transposed conv with kernel = stride (exact ``stride``-fold upsampling)."""
    _check_dim(dim)
    return _TRANSPOSED_CONV[dim](in_channels, out_channels, tuple(stride), tuple(stride), bias=True)


class ConvNormAct(nn.Sequential):
    """conv (bias) -> InstanceNorm(affine, ``eps``) -> LeakyReLU(``negative_slope``).

    Input (B, in_channels, *spatial); output (B, out_channels, *ceil(spatial / stride)).
    """

    def __init__(
        self,
        *,
        dim: int,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        eps: float = 1e-5,
        negative_slope: float = 1e-2,
    ) -> None:
        super().__init__(
            conv_nd(dim, in_channels, out_channels, kernel, stride),
            _INSTANCE_NORM[dim](out_channels, eps=eps, affine=True),
            nn.LeakyReLU(negative_slope, inplace=True),
        )


class ConvStage(nn.Sequential):
    """``num_convs`` :class:`ConvNormAct` blocks; only the first one is strided (downsampling).

    Input (B, in_channels, *spatial); output (B, out_channels, *ceil(spatial / stride)).
    """

    def __init__(
        self,
        *,
        dim: int,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        num_convs: int,
        eps: float = 1e-5,
        negative_slope: float = 1e-2,
    ) -> None:
        if num_convs < 1:
            raise ValueError(f"a stage needs at least one conv, found num_convs={num_convs}")
        ones = (1,) * dim
        super().__init__(
            *(
                ConvNormAct(
                    dim=dim,
                    in_channels=in_channels if i == 0 else out_channels,
                    out_channels=out_channels,
                    kernel=kernel,
                    stride=stride if i == 0 else ones,
                    eps=eps,
                    negative_slope=negative_slope,
                )
                for i in range(num_convs)
            )
        )


def init_weights(module: nn.Module) -> None:
    """He (Kaiming-normal, ``a = 0.01``) init of conv and transposed-conv weights, zero biases.

    Use as ``net.apply(init_weights)``. Norm layers keep PyTorch's defaults (weight 1, bias 0).
    """
    if isinstance(module, (*_CONV.values(), *_TRANSPOSED_CONV.values())):
        nn.init.kaiming_normal_(module.weight, a=HE_NEGATIVE_SLOPE)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
