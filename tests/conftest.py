"""Shared test setup: deterministic seeds and small-model helpers."""

from __future__ import annotations

import pytest
import torch

from flowaug.flows.layers import CouplingNet, GaussianPrior


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


def perturb_zero_init(module: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Give zero-initialized output layers small random weights.

    Freshly built flows start as the identity (coupling outputs and priors are zero), which would
    make invertibility and log-det checks pass trivially; tests call this first.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, CouplingNet):
                m.out.weight.normal_(0, scale)
                m.out.bias.normal_(0, scale)
            if isinstance(m, GaussianPrior):
                m.base.normal_(0, scale)
                if m.cond is not None:
                    m.cond.weight.normal_(0, scale)
    return module
