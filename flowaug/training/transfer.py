"""Transfer: start a class-conditional flow from one fitted elsewhere.

Two sources are useful when labels are few:

- an **unconditional** flow fitted on unlabelled images of the same kind: every layer is kept;
  the class conditioning it never had (the coupling networks' class inputs, the priors' class
  terms) starts at zero, so the new model starts as exactly the source's density for every
  class and fine-tuning on the labelled images teaches it the classes;
- a **class-conditional** flow fitted on other classes: every shared layer is kept; a class
  whose name the source knows keeps its embedding, a new class starts at the mean of the
  source's embeddings (a "typical class"), and fine-tuning moves it.

Example:
    >>> from flowaug import Glow
    >>> source = Glow((1, 8, 8), num_classes=None, depth=1, hidden=8, levels=17)
    >>> model = transfer_model(source, num_classes=3)
    >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
    >>> bool(torch.allclose(model.eval().log_prob(x, y), source.eval().log_prob(x), atol=1e-5))
    True
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import torch
from torch import nn

from flowaug.flows.base import ConditionalFlow
from flowaug.io import load

__all__ = ["transfer_model"]


def transfer_model(
    init: ConditionalFlow | str | os.PathLike,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> ConditionalFlow:
    """A model for ``num_classes`` classes that starts from ``init``'s weights.

    Args:
        init: a fitted model, or the folder it was saved in (``save_pretrained``).
        num_classes: classes of the data to fine-tune on (0 for an unconditional model).
        class_names: their names; classes the source knows by name keep their embedding.

    Returns:
        a new model in train mode (``init`` is left untouched), with ActNorm initialized from
        the source (the trainer does not re-initialize it).

    Raises:
        ValueError: the source is a table model whose column encoders hold other classes.
    """
    source = load(init) if isinstance(init, (str, os.PathLike)) else init
    if not isinstance(source, ConditionalFlow):
        raise TypeError(
            f"init must be a flowaug model (Glow, TabularFlow) or the folder of a saved one, got "
            f"{type(init).__name__}."
        )
    source_names = getattr(source, "class_names", None)
    names = None if class_names is None else [str(c) for c in class_names]
    if source.num_classes == num_classes and (names is None or source_names in (None, names)):
        model = copy.deepcopy(source).train()
        if names is not None:
            model.class_names = names
        return model
    config = dict(source.config)
    if "columns" in config:
        raise ValueError(
            "init is a table model whose column encoders fix its classes "
            f"({source.num_classes}); transfer to {num_classes} classes works for image flows. "
            "Fit the table model with all its classes (unlabelled rows as -1) instead."
        )
    config["num_classes"] = num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = type(source)(**config)
    _copy_shared(source, model)
    _start_conditioning_at_zero(source, model)
    _map_embeddings(source, model, source_names, names)
    model.class_names = names
    return model.train()


def _copy_shared(source: nn.Module, target: nn.Module) -> None:
    """Every tensor with the same name and shape in both (layers, ActNorm's init flags)."""
    own = target.state_dict()
    shared = {
        k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape
    }
    target.load_state_dict({**own, **shared})


def _start_conditioning_at_zero(source: nn.Module, target: nn.Module) -> None:
    """Class inputs the source lacked map every class to what the source computes."""
    source_params = dict(source.named_parameters())
    with torch.no_grad():
        for name, module in target.named_modules():
            new = f"{name}.weight" not in source_params
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] == "cond" and new:
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()


def _map_embeddings(
    source: nn.Module,
    target: nn.Module,
    source_names: list[str] | None,
    names: list[str] | None,
) -> None:
    """Known classes keep their embedding; new ones start at the source's mean embedding."""
    src, dst = getattr(source, "embedding", None), getattr(target, "embedding", None)
    if not isinstance(src, nn.Embedding) or not isinstance(dst, nn.Embedding):
        return
    if src.weight.shape[1] != dst.weight.shape[1]:
        return
    with torch.no_grad():
        dst.weight.copy_(src.weight.mean(0, keepdim=True).expand_as(dst.weight))
        if source_names is not None and names is not None:
            for c, name in enumerate(names):
                if name in source_names:
                    dst.weight[c] = src.weight[source_names.index(name)]
