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
:meth:`~flowaug.flows.base.ConditionalFlow.classify`), and the image is replaced only where that
posterior reaches ``confidence``, so the transform stays label-preserving
(:mod:`flowaug.augment_label`). With an unconditional flow, latent mode varies the image and
never reads its label.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2._utils import is_pure_tensor

from flowaug._checks import check_probability, check_temperature, check_threshold, is_number
from flowaug.augment_label import (
    DEFAULT_CONFIDENCE,
    check_class,
    default_labels_getter,
    label_like,
    read_batch_labels,
    read_label,
    unlabelled_warning,
)
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.pixels import (
    image_to_model,
    model_to_image,
    pil_to_tensor,
    tensor_to_pil,
    to_unit_float,
)
from flowaug.sampling import SyntheticBank, check_bank_size, eval_mode, iter_synthetic
from flowaug.seeding import WorkerRandomState

__all__ = ["FlowAugment", "default_labels_getter"]

_MODES = ("resample", "latent")
_PIL_CHANNELS = {"L": 1, "RGB": 3}


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

    Labels are found as torchvision does: the second item of a tuple or list (``(image,
    label)``, plain ints included) or a dict key containing ``"label"``; one it cannot read (a
    str, a float, a one-hot vector) is an error. A batch ``[B, C, H, W]`` inside a sample (next
    to other images, as torchvision's sample checks pass it) is handled as it is alone, with a
    ``[B]`` label; single images take a single label (in a sample holding both, the kind the
    label does not fit is handled as unlabelled).

    Pass the label with the image (``transforms(image, label)``, a batch with its labels):
    that is exact and cheap. An image without a label (``ImageFolder(root, transform=aug)``
    never passes one; a warning says so, once) is classified by the flow, one pass per class,
    and replaced under the flow's class only where its posterior is at least ``confidence``;
    otherwise it comes back unchanged. ``aug.stats`` counts both in this process (DataLoader
    workers keep their own counts). On digits (``benchmarks/confidence.py``) the argmax class
    of a briefly fitted Glow differs from the true label for 2.6% of its training images after
    300 steps (0.8% after 1000); at the default ``confidence=0.99`` it acts on 91% (98%) of
    them and 0.58% (0.22%) of those are flips; a flow fitted for 60 steps flips 29% by argmax
    and is confident on almost none, so nothing is replaced.

    An unconditional flow (``num_classes=0``) works in latent mode: each image is encoded,
    perturbed in latent space and decoded, and labels are never read (passed through as they
    are).

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
        model: a trained class-conditional image flow (e.g. :class:`flowaug.Glow`), or an
            unconditional one for ``mode="latent"``; its ``event_shape`` is the image shape
            every input must have.
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
            the flow's own class, where it is confident; no warning), or a callable
            ``sample -> label``.
        coarse_scales: latent mode only: vary only the latents of this many of the coarsest
            scales of a multi-scale flow (``model.latent_scale_sizes``; a Glow on 8x8 images
            has 2), keeping the input's finer-scale latents (strokes, texture); ``None``
            varies them all. Useful when the flow models pixel detail poorly, as one fitted on
            a few images does; on scarce digits it is on par with varying every scale
            (``benchmarks/utility.py``).
        confidence: images without a label are replaced only where the flow's class
            posterior ``max_c p(c | x)`` is at least this (0: always, under the argmax class).

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
        confidence: float = DEFAULT_CONFIDENCE,
    ):
        super().__init__()
        if isinstance(model, ConditionalFlow) and model.num_classes == 0:
            if mode != "latent":
                raise ValueError(
                    f"FlowAugment(mode={mode!r}) needs a class-conditional model, got an "
                    f"unconditional {type(model).__name__} (num_classes=0); use mode='latent' "
                    "(a variation of each input, its label untouched) or fit it with labels."
                )
        else:
            model = check_conditional_model(model)
        if len(model.event_shape) != 3:
            raise ValueError(
                f"FlowAugment needs an image model (event_shape [C, H, W]), got event_shape "
                f"{list(model.event_shape)}; for tables use flowaug.FlowOversampler."
            )
        p = check_probability(p)
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
        self.temperature = check_temperature(temperature)
        self.seed = None if seed is None else int(seed)
        self.filter_threshold = check_threshold(filter_threshold)
        self._labels_getter = default_labels_getter if labels_getter == "default" else labels_getter
        self._rng = WorkerRandomState(self.seed)
        self._num_classes = model.num_classes
        self._levels = model.levels
        self.confidence = check_probability(confidence, "confidence")
        self.stats = {"unlabelled_augmented": 0, "unlabelled_kept": 0}
        self._warned_unlabelled = False
        self._shape = tuple(int(s) for s in model.event_shape)
        self.bank = self._make_bank(bank, bank_size)

    def _make_bank(self, bank: Any, bank_size: int) -> SyntheticBank | None:
        if bank is None or bank is False or self.mode != "resample":
            if isinstance(bank, SyntheticBank) and self.mode != "resample":
                raise ValueError("bank is used by mode='resample' only; pass bank=None.")
            return None
        if bank is True:
            if isinstance(bank_size, (int, np.integer)) and not isinstance(bank_size, bool):
                check_bank_size(self.model, int(bank_size), "bank_size")
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
            f"coarse_scales={self.coarse_scales}, confidence={self.confidence})"
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
        self._check_range(inpt)

    def _check_range(self, x: Tensor) -> None:
        """Float images must lie in ``[0, 1]``: checked on every call (one reduction), since a
        pipeline that normalizes first would otherwise get un-normalized replacements back."""
        if x.is_floating_point() and x.numel():
            lo, hi = torch.aminmax(x if type(x) is Tensor else x.as_subclass(Tensor))
            lo, hi = lo.item(), hi.item()
            if not (lo >= 0 and hi <= 1):  # NaN fails too
                raise ValueError(
                    f"FlowAugment expected float images in [0, 1], got values in [{lo:.3g}, "
                    f"{hi:.3g}]; rescale them to [0, 1] (e.g. x / 16 for 0..16 level codes) and "
                    "put FlowAugment before v2.Normalize."
                )

    def _check_class(self, label: int) -> int:
        return check_class(label, self._num_classes)

    def _label_value(self, label: Any) -> int | None:
        """The class of one image's label (``None``: none, or an unconditional model)."""
        return read_label(label, self._num_classes) if self._num_classes else None

    def _warn_unlabelled(self) -> None:
        if not self._warned_unlabelled and self._num_classes and self._labels_getter is not None:
            self._warned_unlabelled = True
            warnings.warn(unlabelled_warning(self.confidence), UserWarning, stacklevel=5)

    # --- torchvision hooks --------------------------------------------------------------------
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """One draw per sample, shared by all its images: ``{"apply": bool}``."""
        return {"apply": self._rng.python.random() < self.p}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Replace one image (``params["apply"]``) with a sample of class ``params["label"]``
        (``None``: the flow's own class where it is confident, else ``inpt`` itself); same
        type, shape, dtype and range as ``inpt``."""
        if not params.get("apply", True):
            return inpt
        if isinstance(inpt, PIL.Image.Image):
            x = pil_to_tensor(inpt)
        elif type(inpt) is Tensor:
            x = inpt if inpt.shape == self._shape else inpt.reshape(self._shape)
        else:
            x = inpt.as_subclass(Tensor)
        label = params.get("label")
        if label is None and self._num_classes:
            classes, confident = self._flow_classes(x[None])
            if not confident[0]:
                return inpt
            label = int(classes[0])
        out = self._replace_one(x, label)
        if isinstance(inpt, PIL.Image.Image):
            return tensor_to_pil(out, inpt.mode)
        if type(inpt) is Tensor:
            return out if out.shape == inpt.shape else out.reshape(inpt.shape)
        return tv_tensors.wrap(out, like=inpt)

    def _replace_one(self, x: Tensor, label: int | None) -> Tensor:
        """``x [C, H, W]`` uint8 or float -> a replacement of the same dtype and device, of
        class ``label`` (``None`` with an unconditional model only)."""
        if self.mode == "resample":
            if self.bank is not None:
                index = self._rng.python.randrange(self.bank.n_per_class)
                dtype = torch.uint8 if x.dtype == torch.uint8 else torch.float32
                out = self.bank.get(label, index, dtype)
                return out if out.dtype == x.dtype and out.device == x.device else out.to(x)
            return self._like(self._sample(torch.tensor([label]))[0], x)
        return self._latent(x[None], None if label is None else torch.tensor([label]))[0]

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

    def _flow_classes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """For images ``[B, C, H, W]`` without labels: the flow's class (argmax posterior),
        LongTensor ``[B]``, and whether its posterior reaches ``confidence``, bool ``[B]``
        (both on the CPU); counted in ``stats``."""
        with eval_mode(self.model):
            posterior = self.model.classify(self._to_model(x))
        confident = (posterior.amax(1) >= self.confidence).cpu()
        augmented = int(confident.sum())
        self.stats["unlabelled_augmented"] += augmented
        self.stats["unlabelled_kept"] += confident.numel() - augmented
        return posterior.argmax(1).cpu(), confident

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

    def _latent(self, x: Tensor, labels: Tensor | None) -> Tensor:
        """Latent-mode variation of images ``[B, C, H, W]`` under ``labels`` ``[B]`` (``None``
        for an unconditional model)."""
        with eval_mode(self.model):
            y = None if labels is None else labels.to(self.model.device)
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
        """Replace a random fraction ``p`` of ``images [B, C, H, W]`` in one pass; without
        ``labels`` only where the flow is confident."""
        x = images.as_subclass(Tensor) if isinstance(images, tv_tensors.TVTensor) else images
        if x.dtype != torch.uint8 and not x.is_floating_point():
            self._check_image(x[0])
        if tuple(x.shape[1:]) != self._shape:
            raise self._shape_error(f"a batch of shape {list(x.shape)}")
        y = None
        if labels is not None and self._num_classes:
            y = read_batch_labels(labels, x.shape[0], self._num_classes)
        self._check_range(x)
        mask = torch.rand(x.shape[0], generator=self._rng.torch) < self.p
        index = mask.nonzero().flatten()
        if index.numel() == 0:
            return images
        sel = x[index.to(x.device)]
        if y is not None:
            y = y[index]
        elif self._num_classes:
            y, confident = self._flow_classes(sel)
            if not confident.all():
                index, y, sel = index[confident], y[confident], sel[confident.to(sel.device)]
                if index.numel() == 0:
                    return images
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
        if label is not None and type(label) is not int and not label_like(label):
            return None
        return image, label, sample

    def _is_batch(self, leaf: Any) -> bool:
        return not isinstance(leaf, PIL.Image.Image) and leaf.ndim == len(self._shape) + 1

    def forward(self, *inputs: Any) -> Any:
        """Transform one sample (image, ``(image, label)``, dict, ...) or a batch."""
        fast = self._fast_split(inputs)
        if fast is not None:
            image, label, sample = fast
            self._check_image(image)
            label = self._label_value(label)
            if label is None:
                self._warn_unlabelled()
            if self._rng.python.random() >= self.p:
                return sample
            out = self.transform(image, {"apply": True, "label": label})
            if out is image or sample is image:
                return sample if out is image else out
            return [out, sample[1]] if type(sample) is list else (out, sample[1])
        sample = inputs if len(inputs) > 1 else inputs[0]
        label = None if self._labels_getter is None else self._labels_getter(sample)
        flat, spec = tree_flatten(sample)
        needs = self._needs_transform_list(flat)
        for i, leaf in enumerate(flat):
            if leaf is label:
                needs[i] = False
        batches = [i for i, need in enumerate(needs) if need and self._is_batch(flat[i])]
        singles = [i for i, need in enumerate(needs) if need and i not in batches]
        if not batches and not singles:
            return sample
        out = list(flat)
        single_label = label
        if batches:
            # a batch takes a [B] label and single images a single one: in a sample holding
            # both, each kind takes the label only if it has that kind's shape
            single_label = label if type(label) is int or label_like(label) else None
            for i in batches:
                batch_label = label if single_label is None or not singles else None
                out[i] = self._replace_batch(flat[i], batch_label)
            if not singles:
                return tree_unflatten(out, spec)
        for i in singles:
            self._check_image(flat[i])
        single_label = self._label_value(single_label)
        if single_label is None:
            self._warn_unlabelled()
        params = self.make_params([flat[i] for i in singles])
        if not params["apply"]:
            return tree_unflatten(out, spec) if batches else sample
        params["label"] = single_label
        for i in singles:
            out[i] = self.transform(flat[i], params)
        if not batches and all(out[i] is flat[i] for i in singles):
            return sample  # nothing replaced (the flow was not confident): the sample itself
        return tree_unflatten(out, spec)
