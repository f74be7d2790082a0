"""Dropout for the coupling networks, fast on the CPU.

torch's CPU dropout draws its mask with ``bernoulli_``, one number at a time
(https://github.com/pytorch/pytorch/issues/138199): on a 28x28 Glow it took 15% of a training
step. :class:`Dropout` draws the CPU mask as ``rand >= p`` instead (as torch's own compiler
decomposes ``bernoulli``), half the time forward and backward, the same distribution; on other
devices it is :class:`torch.nn.Dropout`. Measured by ``benchmarks/speed.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Dropout"]


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` (same arguments, same distribution, global RNG) whose CPU
    mask is ``rand >= p``, scaled by ``1 / (1 - p)``.

    Example:
        >>> layer = Dropout(0.2).train()
        >>> x = torch.ones(4, 1000)
        >>> out = layer(x)
        >>> sorted(out.unique().tolist()), abs(float((out == 0).float().mean()) - 0.2) < 0.05
        ([0.0, 1.25], True)
    """

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of any shape -> the same shape and dtype, a fraction ``p`` zeroed (training)."""
        if not self.training or not 0.0 < self.p < 1.0 or x.device.type != "cpu":
            return super().forward(x)
        # float32 draws whatever x's dtype (a bf16 uniform is too coarse for an exact p)
        mask = torch.rand(x.shape).ge_(self.p).mul_(1.0 / (1.0 - self.p)).to(x.dtype)
        return x.mul_(mask) if self.inplace else x * mask
