"""FlowAugment: a torchvision v2 transform that swaps images for flow samples of the same class.

Two modes:

- ``"resample"`` replaces the image by a synthetic image of its class, drawn from a
  :class:`~flowaug.sampling.SyntheticBank` (the cost of a tensor copy) or sampled on the fly;
- ``"latent"`` encodes the image, moves its latent toward fresh noise,
  ``eps' = sqrt(1 - s^2) eps + s T noise`` (``s = strength``, ``T = temperature``), and decodes
  it under the same class: a variation of *this* image. On a multi-scale flow,
  ``coarse_scales=n`` moves only the latents of the ``n`` coarsest scales (the global shape)
  and keeps the finer ones (strokes, texture) of the input.

Without a label the class is the one the flow itself assigns by Bayes' rule (argmax of
:meth:`~flowaug.flows.base.ConditionalFlow.classify`), so the transform stays label-preserving.
"""

from __future__ import annotations

import math
import os
import random
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.data import get_worker_info
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2._utils import is_pure_tensor

from flowaug.flows.base import ConditionalFlow, is_number
from flowaug.preprocessing import to_unit_float
from flowaug.sampling import (
    SyntheticBank,
    _check_model,
    _check_probability,
    _check_temperature,
    _check_threshold,
    derive_seed,
    eval_mode,
    image_to_model,
    iter_synthetic,
    model_to_image,
)

__all__ = ["FlowAugment"]

_MODES = ("resample", "latent")
_RANGE_CHECKS = 32
_PIL_CHANNELS = {"L": 1, "RGB": 3}


_RANDOM_STATES: weakref.WeakSet[_RandomState] = weakref.WeakSet()


def _reseed_after_fork() -> None:
    for state in list(_RANDOM_STATES):
        state.reset()


os.register_at_fork(after_in_child=_reseed_after_fork)


class _RandomState:
    """Random streams owned by one process: Python's ``random`` for per-sample scalars (cheap),
    a ``torch.Generator`` for tensors.

    Seeded on first use in every process (a forked child starts over, an unpickled copy too):
    from ``seed``, mixed with the DataLoader worker's seed inside a worker so that workers and
    epochs differ; or, with ``seed=None``, from torch's global RNG, which DataLoader seeds per
    worker.
    """

    def __init__(self, seed: int | None):
        self.seed = seed
        self.reset()
        _RANDOM_STATES.add(self)

    def reset(self) -> None:
        self._python: random.Random | None = None
        self._torch: torch.Generator | None = None

    def _start(self) -> None:
        info = get_worker_info()
        if self.seed is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        elif info is None:
            seed = derive_seed(self.seed)
        else:
            seed = derive_seed(self.seed, info.seed)
        self._python = random.Random(seed)
        self._torch = torch.Generator().manual_seed(seed)

    @property
    def python(self) -> random.Random:
        if self._python is None:
            self._start()
        return self._python  # type: ignore[return-value]

    @property
    def torch(self) -> torch.Generator:
        if self._torch is None:
            self._start()
        return self._torch  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["seed"])


def _label_like(value: Any, batched: bool = False) -> bool:
    """Whether ``value`` can be a class label: an int, or an integer tensor/array holding one
    value (``batched``: a 1-D integer tensor/array)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return not batched
    if isinstance(value, Tensor) and is_pure_tensor(value):
        integer = not value.is_floating_point() and value.dtype != torch.bool
        size = value.numel()
    elif isinstance(value, np.ndarray):
        integer = np.issubdtype(value.dtype, np.integer)
        size = value.size
    else:
        return False
    return integer and (value.ndim == 1 if batched else size == 1)


def _label_key(mapping: Mapping) -> Any:
    """The label-like key of a dict (``"labels"`` or ``"label"`` first, then any key containing
    ``"label"``)."""
    keys = [k for k in mapping if isinstance(k, str)]
    for key in keys:
        if key.lower() in ("labels", "label"):
            return key
    for key in keys:
        if "label" in key.lower():
            return key
    return None


def default_labels_getter(sample: Any) -> Any:
    """Find the label of a sample, or ``None``: the second item of a tuple/list when it is an
    int or an integer tensor, else the value under a label-like key of a dict (the sample, or
    its second item).

    The second of exactly two items that holds a number, a plain tensor or an array is taken
    as the label even when it is not a valid one (a float, a one-hot vector), so that it gets a
    clear error instead of being passed over: a passed-over label would leave the image
    replaced under the flow's own class while the sample keeps its label.
    """
    if isinstance(sample, (tuple, list)) and len(sample) >= 2:
        second = sample[1]
        if isinstance(second, Mapping):
            key = _label_key(second)
            return None if key is None else second[key]
        if isinstance(sample[0], Tensor) and sample[0].ndim == 4:
            # a batch: plain tensors, arrays and sequences are its labels (wrong ones get a
            # clear error later)
            if isinstance(second, Tensor):
                return second if is_pure_tensor(second) else None
            return second if isinstance(second, (np.ndarray, list, tuple, int)) else None
        if len(sample) == 2 and (
            is_number(second) or isinstance(second, np.ndarray) or is_pure_tensor(second)
        ):
            return second
        return second if _label_like(second) else None
    if isinstance(sample, Mapping):
        key = _label_key(sample)
        return None if key is None else sample[key]
    return None


def _coarse_latent_mask(model: ConditionalFlow, mode: str, coarse_scales: Any) -> Tensor | None:
    """Bool ``[D]``: the latents of the ``coarse_scales`` coarsest scales (``None``: all)."""
    if coarse_scales is None:
        return None
    if mode != "latent":
        raise ValueError("coarse_scales is used by mode='latent' only; pass coarse_scales=None.")
    sizes = model.latent_scale_sizes
    if (
        isinstance(coarse_scales, bool)
        or not isinstance(coarse_scales, (int, np.integer))
        or not 1 <= coarse_scales <= len(sizes)
    ):
        raise ValueError(
            f"coarse_scales must be an int in [1, {len(sizes)}] (this {type(model).__name__} "
            f"has {len(sizes)} latent scales) or None, got {coarse_scales!r}."
        )
    mask = torch.zeros(sum(sizes), dtype=torch.bool)
    mask[sum(sizes[: len(sizes) - int(coarse_scales)]) :] = True
    return mask


class FlowAugment(Transform):
    """Replace images by class-conditional flow samples, inside ``v2.Compose`` or per batch.

    Per sample (in a ``Dataset`` transform): PIL images (mode ``L`` or ``RGB``), uint8 tensors
    (``0..255``), float tensors (``[0, 1]``) and ``tv_tensors.Image`` come back with the same
    type, shape, dtype, device and value range; labels and every other entry of the sample pass
    through as the same object. Per batch (after the DataLoader, like ``v2.MixUp``):
    ``aug(images, labels) -> (images, labels)`` replaces a fraction ``p`` of a
    ``[B, C, H, W]`` batch in one batched pass, on the batch's device.

    Labels are found as torchvision does: the second item of a tuple (``(image, label)``, plain
    ints included) or a dict key containing ``"label"``. Unlabeled images get the class the flow
    assigns (argmax of its class posterior), which costs one flow pass per class.

    Randomness comes from a private stream per process: seeded from ``seed`` (mixed with the
    DataLoader worker's seed inside workers), or from torch's global RNG when ``seed`` is None.
    The same seed gives the same output; inside workers, seed the DataLoader too
    (``generator=torch.Generator().manual_seed(...)``) for run-to-run reproducibility.

    Values follow torchvision: uint8 images hold ``0..255`` and float images ``[0, 1]``; data
    kept as level codes (``0..16`` for scikit-learn's digits) must be scaled first. Outputs lie
    on the model's intensity grid (``levels`` values), like the real data.

    References:
        Semantic Perturbations with Normalizing Flows for Improved Generalization (Yuksel et
        al., 2021), the latent mode's idea: https://arxiv.org/abs/2108.07958

    Arguments:
        model: a trained class-conditional image flow (e.g. :class:`flowaug.Glow`); its
            ``event_shape`` is the image shape every input must have.
        p: probability of replacing each image.
        mode: ``"resample"`` (a synthetic image of the class) or ``"latent"`` (a variation of
            the input image).
        strength: latent mode only, in ``[0, 1]``: 0 returns the input, 1 a fresh sample.
        temperature: latent noise scale of new samples (``< 1``: cleaner, less diverse).
        bank: resample mode only: ``True`` pre-generates a :class:`SyntheticBank` of
            ``bank_size`` samples per class now, a ``SyntheticBank`` is used as is, ``None``
            samples the flow on every call (slow per sample).
        seed: seed of the bank and of the random streams (``None``: from torch's RNG).
        filter_threshold: keep only samples whose class posterior under the flow is at least
            this (see :class:`SyntheticBank`).
        bank_size: samples per class in a bank built here.
        labels_getter: ``"default"`` (see above), ``None`` (never use labels: every image gets
            the flow's own class), or a callable ``sample -> label``.
        coarse_scales: latent mode only: vary only the latents of this many of the coarsest
            scales of a multi-scale flow (``model.latent_scale_sizes``; a Glow on 8x8 images
            has 2), keeping the input's finer-scale latents (strokes, texture); ``None``
            varies them all. Useful when the flow models pixel detail poorly, as one fitted on
            a few images does; on scarce digits it is on par with varying every scale
            (``benchmarks/utility.py``).

    Example:
        >>> from torchvision.transforms import v2
        >>> from flowaug import Glow
        >>> model = Glow((1, 8, 8), 10, depth=1, hidden=8, levels=17)
        >>> aug = FlowAugment(model, p=1.0, bank_size=4, seed=0)
        >>> image = torch.zeros(1, 8, 8, dtype=torch.uint8)
        >>> out, label = v2.Compose([aug])(image, 3)
        >>> out.dtype, out.shape, label
        (torch.uint8, torch.Size([1, 8, 8]), 3)
        >>> images, labels = aug(torch.rand(16, 1, 8, 8), torch.arange(16) % 10)
        >>> images.shape
        torch.Size([16, 1, 8, 8])
    """

    _transformed_types = (is_pure_tensor, tv_tensors.Image, PIL.Image.Image)

    def __init__(
        self,
        model: ConditionalFlow,
        p: float = 0.5,
        mode: str = "resample",
        strength: float = 0.5,
        temperature: float = 0.8,
        bank: bool | SyntheticBank | None = True,
        seed: int | None = None,
        filter_threshold: float | None = None,
        bank_size: int = 256,
        labels_getter: str | Callable[[Any], Any] | None = "default",
        coarse_scales: int | None = None,
    ):
        super().__init__()
        model = _check_model(model)
        if len(model.event_shape) != 3:
            raise ValueError(
                f"FlowAugment needs an image model (event_shape [C, H, W]), got event_shape "
                f"{list(model.event_shape)}; for tables use flowaug.FlowOversampler."
            )
        p = _check_probability(p)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        if not is_number(strength):
            raise TypeError(f"strength must be a number in [0, 1], got {strength!r}.")
        if not 0 <= strength <= 1:
            raise ValueError(
                f"strength must be in [0, 1] (0: input, 1: new sample), got {strength}."
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None, got {seed!r}.")
        if labels_getter not in ("default", None) and not callable(labels_getter):
            raise ValueError(
                f"labels_getter must be 'default', None or a callable, got {labels_getter!r}."
            )
        self._latent_mask = _coarse_latent_mask(model, mode, coarse_scales)
        self.coarse_scales = coarse_scales
        self.model = model
        self.p = float(p)
        self.mode = mode
        self.strength = float(strength)
        self.temperature = _check_temperature(temperature)
        self.seed = None if seed is None else int(seed)
        self.filter_threshold = _check_threshold(filter_threshold)
        self._labels_getter = default_labels_getter if labels_getter == "default" else labels_getter
        self._rng = _RandomState(self.seed)
        self._num_classes = model.num_classes
        self._levels = model.levels
        # a mis-scaled pipeline (0..16 floats, Normalize first) shows on the first images, so
        # per-sample calls check the value range of the first few only: it costs a reduction
        self._range_checks = _RANGE_CHECKS
        self._shape = tuple(int(s) for s in model.event_shape)
        self.bank = self._make_bank(bank, bank_size)

    def _make_bank(self, bank: Any, bank_size: int) -> SyntheticBank | None:
        if bank is None or bank is False or self.mode != "resample":
            if isinstance(bank, SyntheticBank) and self.mode != "resample":
                raise ValueError("bank is used by mode='resample' only; pass bank=None.")
            return None
        if bank is True:
            seed = int(torch.randint(0, 2**62, (1,))) if self.seed is None else self.seed
            return SyntheticBank(
                self.model,
                n_per_class=bank_size,
                temperature=self.temperature,
                seed=seed,
                filter_threshold=self.filter_threshold,
            )
        if not isinstance(bank, SyntheticBank):
            raise TypeError(
                f"bank must be True, None or a flowaug.SyntheticBank, got {type(bank).__name__}."
            )
        if bank.num_classes != self.model.num_classes or bank.event_shape != self._shape:
            raise ValueError(
                f"bank holds {bank.num_classes} classes of shape {list(bank.event_shape)} but the "
                f"model has {self.model.num_classes} classes of shape {list(self._shape)}; build "
                "the bank from the same model."
            )
        return bank

    def __repr__(self) -> str:
        # the default nn.Module repr would print the whole flow inside every Compose
        model = type(self.model).__name__
        bank = None if self.bank is None else f"{self.bank.n_per_class}/class"
        return (
            f"FlowAugment(model={model}{list(self._shape)}, p={self.p}, mode={self.mode!r}, "
            f"strength={self.strength}, temperature={self.temperature}, bank={bank}, "
            f"seed={self.seed}, filter_threshold={self.filter_threshold}, "
            f"coarse_scales={self.coarse_scales})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Refresh the bank if its ``refresh_every`` says so (call it in the main process)."""
        if self.bank is not None:
            self.bank.refresh(epoch)

    # --- inputs -------------------------------------------------------------------------------
    def _shape_error(self, got: str) -> ValueError:
        return ValueError(
            f"FlowAugment expected an image of shape {list(self._shape)} (the model's "
            f"image_shape), got {got}; resize before FlowAugment or fit a model at this size."
        )

    def _check_image(self, inpt: Any) -> None:
        """Raise a clear error unless ``inpt`` is one image the model can take."""
        c, h, w = self._shape
        if isinstance(inpt, PIL.Image.Image):
            if _PIL_CHANNELS.get(inpt.mode) != c or inpt.size != (w, h):
                want = "L" if c == 1 else "RGB"
                raise ValueError(
                    f"FlowAugment expected a PIL image of mode {want!r} and size {w}x{h} (the "
                    f"model's image_shape {list(self._shape)}), got mode {inpt.mode!r} and size "
                    f"{inpt.size[0]}x{inpt.size[1]}; convert/resize before FlowAugment "
                    f"(img.convert({want!r})) or fit a model at this size."
                )
            return
        if inpt.dtype != torch.uint8 and not inpt.is_floating_point():
            top = (self._levels or 256) - 1
            raise TypeError(
                f"FlowAugment expected a uint8 image (0..255) or a float image in [0, 1], got "
                f"dtype {inpt.dtype}; convert first: level codes 0..{top} with x.float() / {top}, "
                "8-bit values with x.to(torch.uint8), or use v2.ToDtype(torch.float32, scale=True)."
            )
        shape = inpt.shape
        if shape != self._shape and not (c == 1 and shape == (h, w) and is_pure_tensor(inpt)):
            raise self._shape_error(str(list(shape)))

    def _check_range(self, x: Tensor) -> None:
        if x.is_floating_point() and x.numel():
            lo, hi = torch.aminmax(x)
            lo, hi = lo.item(), hi.item()
            if not (lo >= 0 and hi <= 1):  # NaN fails too
                raise ValueError(
                    f"FlowAugment expected float images in [0, 1], got values in [{lo:.3g}, "
                    f"{hi:.3g}]; rescale them to [0, 1] (e.g. x / 16 for 0..16 level codes) and "
                    "put FlowAugment before v2.Normalize."
                )

    def _check_class(self, label: int) -> int:
        k = self._num_classes
        if not 0 <= label < k:
            raise ValueError(
                f"FlowAugment got label {label}, but the model has {k} classes (0..{k - 1}); map "
                f"labels to 0..{k - 1} or fit the model on these classes."
            )
        return label

    def _label_value(self, label: Any) -> int | None:
        if label is None:
            return None
        if type(label) is int:
            return label if 0 <= label < self._num_classes else self._check_class(label)
        if isinstance(label, (Tensor, np.ndarray)) and not _label_like(label):
            raise ValueError(
                f"FlowAugment needs one integer class label per image, got a "
                f"{type(label).__name__} of shape {list(label.shape)} and dtype {label.dtype}; "
                "for one-hot or mixed labels put FlowAugment before MixUp/CutMix; if it is not "
                "a label, pass labels_getter=None (the flow then assigns the class)."
            )
        if isinstance(label, float) and label.is_integer():
            raise TypeError(
                f"FlowAugment got the float label {label!r}; pass class labels as ints "
                f"(int(label)), or labels_getter=None if it is not a label."
            )
        if isinstance(label, bool) or not isinstance(label, (int, np.integer, Tensor, np.ndarray)):
            raise TypeError(
                f"FlowAugment could not read a class label from a {type(label).__name__} "
                f"({label!r}); pass an int or an integer tensor, or labels_getter=None to ignore "
                "labels."
            )
        return self._check_class(int(label))

    # --- torchvision hooks --------------------------------------------------------------------
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """One draw per sample, shared by all its images: ``{"apply": bool}``."""
        return {"apply": self._rng.python.random() < self.p}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Replace one image (``params["apply"]``) with a sample of class ``params["label"]``
        (``None``: the flow's own class); same type, shape, dtype and range as ``inpt``."""
        if not params.get("apply", True):
            return inpt
        label = params.get("label")
        if isinstance(inpt, PIL.Image.Image):
            x = torch.from_numpy(np.array(inpt, dtype=np.uint8, copy=True))
            x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
            out = self._replace_one(x, label)
            arr = out[0] if out.shape[0] == 1 else out.permute(1, 2, 0)
            return PIL.Image.fromarray(arr.contiguous().numpy(), mode=inpt.mode)
        if type(inpt) is Tensor:
            if inpt.shape == self._shape:
                return self._replace_one(inpt, label)
            return self._replace_one(inpt.reshape(self._shape), label).reshape(inpt.shape)
        out = self._replace_one(inpt.as_subclass(Tensor), label)
        return tv_tensors.wrap(out, like=inpt)

    def _replace_one(self, x: Tensor, label: int | None) -> Tensor:
        """``x [C, H, W]`` uint8 or float -> a replacement of the same dtype and device."""
        if self._range_checks > 0 or label is None or self.mode == "latent":
            self._range_checks -= 1
            self._check_range(x)
        if label is None:
            label = int(self._flow_classes(x[None])[0])
        if self.mode == "resample":
            if self.bank is not None:
                index = self._rng.python.randrange(self.bank.n_per_class)
                dtype = torch.uint8 if x.dtype == torch.uint8 else torch.float32
                out = self.bank.get(label, index, dtype)
                return out if out.dtype == x.dtype and out.device == x.device else out.to(x)
            return self._like(self._sample(torch.tensor([label]))[0], x)
        return self._latent(x[None], torch.tensor([label]))[0]

    # --- the flow -----------------------------------------------------------------------------
    def _to_model(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` (uint8 or float ``[0, 1]``) -> model space on the model's
        device."""
        return image_to_model(to_unit_float(x), self._levels).to(self.model.device)

    def _like(self, image01: Tensor, like: Tensor) -> Tensor:
        """Grid values in ``[0, 1]`` -> ``like``'s dtype (uint8: 0..255) and device."""
        image01 = image01.to(like.device)
        if like.dtype == torch.uint8:
            return (image01 * 255.0).round_().to(torch.uint8)
        return image01.to(like.dtype)

    def _flow_classes(self, x: Tensor) -> Tensor:
        """The flow's class (argmax posterior) for images ``[B, C, H, W]``: LongTensor ``[B]``."""
        with eval_mode(self.model):
            return self.model.classify(self._to_model(x)).argmax(1).cpu()

    def _sample(self, labels: Tensor) -> Tensor:
        """Fresh samples without a bank: grid values ``[B, C, H, W]`` in ``[0, 1]`` (CPU)."""
        counts: dict[int, int] = {}
        for c in labels.tolist():
            counts[c] = counts.get(c, 0) + 1
        got: dict[int, list[Tensor]] = {c: [] for c in counts}
        for x, y in iter_synthetic(
            self.model,
            counts,
            self.temperature,
            self._rng.torch,
            filter_threshold=self.filter_threshold,
        ):
            for xi, yi in zip(x, y.tolist(), strict=True):
                got[yi].append(xi)
        out = torch.stack([got[c].pop() for c in labels.tolist()])
        return model_to_image(out, self._levels)

    def _latent(self, x: Tensor, labels: Tensor) -> Tensor:
        """Latent-mode variation of images ``[B, C, H, W]`` under ``labels`` ``[B]``."""
        with eval_mode(self.model):
            y = labels.to(self.model.device)
            eps = self.model.encode(self._to_model(x), y)
            noise = torch.randn(eps.shape, generator=self._rng.torch).to(eps)
            s = self.strength
            moved = math.sqrt(1.0 - s * s) * eps + (s * self.temperature) * noise
            mask = self._latent_mask
            eps = moved if mask is None else torch.where(mask.to(eps.device), moved, eps)
            out = model_to_image(self.model.decode(eps, y), self._levels)
        return self._like(out, x)

    # --- batches ------------------------------------------------------------------------------
    def _replace_batch(self, images: Any, labels: Any) -> Any:
        """Replace a random fraction ``p`` of ``images [B, C, H, W]`` in one pass."""
        x = images.as_subclass(Tensor) if isinstance(images, tv_tensors.TVTensor) else images
        if x.dtype != torch.uint8 and not x.is_floating_point():
            self._check_image(x[0])
        if tuple(x.shape[1:]) != self._shape:
            raise self._shape_error(f"a batch of shape {list(x.shape)}")
        if labels is not None:
            y = torch.as_tensor(labels)
            if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
                raise ValueError(
                    f"FlowAugment expected integer labels of shape [{x.shape[0]}] with a batch, "
                    f"got shape {list(y.shape)} and dtype {y.dtype}; put FlowAugment before "
                    "MixUp/CutMix, which make one-hot labels."
                )
            if y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"FlowAugment got {y.shape[0]} labels for a batch of {x.shape[0]} images."
                )
            y = y.cpu().long()
            if y.numel():
                self._check_class(int(y.min()) if y.min() < 0 else int(y.max()))
        mask = torch.rand(x.shape[0], generator=self._rng.torch) < self.p
        index = mask.nonzero().flatten()
        if index.numel() == 0:
            return images
        sel = x[index.to(x.device)]
        self._check_range(sel)
        y = self._flow_classes(sel) if labels is None else y[index]
        if self.mode == "latent":
            new = self._latent(sel, y)
        elif self.bank is not None:
            dtype = torch.uint8 if x.dtype == torch.uint8 else torch.float32
            new = self.bank.draw_batch(y, self._rng.torch, dtype).to(device=x.device, dtype=x.dtype)
        else:
            new = self._like(self._sample(y), x)
        out = x.clone()
        out[index.to(x.device)] = new
        return tv_tensors.wrap(out, like=images) if isinstance(images, tv_tensors.Image) else out

    # --- entry point --------------------------------------------------------------------------
    def _fast_split(self, inputs: tuple[Any, ...]) -> tuple[Any, Any, Any] | None:
        """``(image, label, sample)`` for the common shapes of a sample (one image, alone or
        with an int label), or ``None`` to take the general path. Skipping pytree flattening
        keeps the per-image cost near a tensor copy."""
        if len(inputs) == 1:
            sample = inputs[0]
            if type(sample) in (tuple, list) and len(sample) == 2:
                image, label = sample
            else:
                image, label = sample, None
        elif len(inputs) == 2:
            sample = inputs
            image, label = inputs
        else:
            return None
        if type(image) is Tensor or type(image) is tv_tensors.Image:
            if image.ndim != len(self._shape) and not (image.ndim == 2 and type(image) is Tensor):
                return None
        elif not isinstance(image, PIL.Image.Image):
            return None
        if self._labels_getter is not default_labels_getter:
            return None
        if label is not None and type(label) is not int and not _label_like(label):
            return None
        return image, label, sample

    def forward(self, *inputs: Any) -> Any:
        """Transform one sample (image, ``(image, label)``, dict, ...) or a batch."""
        fast = self._fast_split(inputs)
        if fast is not None:
            image, label, sample = fast
            self._check_image(image)
            label = self._label_value(label)
            if self._rng.python.random() >= self.p:
                return sample
            out = self.transform(image, {"apply": True, "label": label})
            if sample is image:
                return out
            return [out, sample[1]] if type(sample) is list else (out, sample[1])
        sample = inputs if len(inputs) > 1 else inputs[0]
        label = None if self._labels_getter is None else self._labels_getter(sample)
        flat, spec = tree_flatten(sample)
        needs = self._needs_transform_list(flat)
        for i, leaf in enumerate(flat):
            if leaf is label:
                needs[i] = False
        images = [leaf for leaf, need in zip(flat, needs, strict=True) if need]
        if not images:
            return sample
        if len(images) == 1 and not isinstance(images[0], PIL.Image.Image):
            if images[0].ndim == len(self._shape) + 1:
                out = self._replace_batch(images[0], label)
                flat_out = [out if need else leaf for leaf, need in zip(flat, needs, strict=True)]
                return tree_unflatten(flat_out, spec)
        for image in images:
            self._check_image(image)
        label = self._label_value(label)
        params = self.make_params(images)
        if not params["apply"]:
            return sample
        params["label"] = label
        flat_out = [
            self.transform(leaf, params) if need else leaf
            for leaf, need in zip(flat, needs, strict=True)
        ]
        return tree_unflatten(flat_out, spec)
