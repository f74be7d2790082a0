"""FlowAugment: a torchvision v2 transform that swaps images for flow samples of the same class;
what replaces them is the mode's algorithm (:mod:`~flowaug.integrations.augment.strategies`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from operator import is_not, itemgetter
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
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.integrations.augment.labels import (
    DEFAULT_CONFIDENCE,
    default_labels_getter,
    label_like,
    read_batch_labels,
    read_label,
    unlabelled_warning,
)
from flowaug.integrations.augment.strategies import (
    Latent,
    Resample,
    coarse_latent_mask,
    model_input,
)
from flowaug.pixels import pil_to_tensor, tensor_to_pil
from flowaug.sampling import SyntheticBank, check_bank_size, eval_mode
from flowaug.seeding import WorkerRandomState

__all__ = ["FlowAugment"]

_MODES = ("resample", "latent")
_first = itemgetter(0)
_PIL_CHANNELS = {"L": 1, "RGB": 3}


class FlowAugment(Transform):
    """Replace images by class-conditional flow samples, inside ``v2.Compose`` or per batch.

    Per sample (in a ``Dataset`` transform): PIL images (mode ``L`` or ``RGB``), uint8 tensors
    (``0..255``), float tensors (``[0, 1]``) and ``tv_tensors.Image`` come back with the same
    type, shape, dtype, device and value range, on the model's intensity grid; labels and every
    other entry of the sample pass through as the same object. Per batch (after the DataLoader,
    like ``v2.MixUp``): ``aug(images, labels) -> (images, labels)`` replaces a fraction ``p`` of
    a ``[B, C, H, W]`` batch in one batched pass, on the batch's device. Data kept as level
    codes (``0..16`` for scikit-learn's digits) must be scaled to ``[0, 1]`` first.

    Labels are found as torchvision does: the second item of a tuple or list (``(image,
    label)``, plain ints included) or a dict key containing ``"label"``; one it cannot read (a
    str, a float, a one-hot vector) is an error. A batch inside a sample (next to other images,
    as torchvision's sample checks pass it) takes a ``[B]`` label and single images a single
    one (in a sample holding both, the kind the label does not fit is handled as unlabelled).

    Pass the label with the image (``transforms(image, label)``, a batch with its labels): that
    is exact and cheap. An image without one (``ImageFolder(root, transform=aug)`` never passes
    one; a warning says so, once) is classified by the flow, one pass per class, and replaced
    under the flow's class only where its posterior is at least ``confidence``, else returned
    unchanged; ``aug.stats`` counts both in this process (how often the flow's class is wrong:
    :data:`~flowaug.integrations.augment.labels.DEFAULT_CONFIDENCE`). An unconditional flow
    (``num_classes=0``) works in latent mode and never reads labels.

    Randomness comes from a private stream per process: seeded from ``seed`` (mixed with the
    DataLoader worker's seed inside workers), or from torch's global RNG when ``seed`` is None.
    The same seed gives the same output; inside workers, seed the DataLoader too
    (``generator=torch.Generator().manual_seed(...)``) for run-to-run reproducibility.
    :meth:`make_params` draws whether a sample's images are replaced, the mode's algorithm what
    replaces them (for the images it replaces only).

    References:
        Semantic Perturbations with Normalizing Flows for Improved Generalization (Yuksel et
        al., 2021), the latent mode's idea: https://arxiv.org/abs/2108.07958

    Arguments:
        model: a trained class-conditional image flow (e.g. :class:`flowaug.Glow`), or an
            unconditional one for ``mode="latent"``; its ``event_shape`` is the input shape.
        p: probability of replacing each image.
        mode: ``"resample"`` (a synthetic image of the class) or ``"latent"`` (a variation of
            the input image, ``eps' = sqrt(1 - s^2) eps + s T noise``, decoded under its class).
        strength: latent mode only, ``s`` in ``[0, 1]``: 0 returns the input, 1 a new sample.
        temperature: latent noise scale ``T`` of new samples (``< 1``: cleaner, less diverse).
        bank: resample mode only: ``True`` pre-generates a :class:`SyntheticBank` of
            ``bank_size`` samples per class now, a ``SyntheticBank`` is used as is, ``None``
            samples the flow on every call (slow per sample).
        seed: seed of the bank and of the random streams (``None``: from torch's RNG).
        filter_threshold: keep only samples whose class posterior under the flow is at least
            this (see :class:`SyntheticBank`).
        bank_size: samples per class in a bank built here.
        labels_getter: ``"default"`` (see above), ``None`` (never use labels: every image gets
            the flow's own class, where it is confident; no warning), or ``sample -> label``.
        coarse_scales: latent mode only: vary only the latents of this many of the coarsest
            scales of a multi-scale flow (``model.latent_scale_sizes``; a Glow on 8x8 images
            has 2), keeping the input's finer-scale latents (strokes, texture); ``None``
            varies them all. Useful where the flow models pixel detail poorly (fitted on few
            images); on scarce digits on par with varying every scale (``benchmarks/utility.py``).
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
        self.model = _check_model(model, mode)
        self.p = check_probability(p)
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
        if coarse_scales is not None and mode != "latent":
            raise ValueError(
                "coarse_scales is used by mode='latent' only; pass coarse_scales=None."
            )
        mask = coarse_latent_mask(model, coarse_scales)
        self.mode, self.strength, self.coarse_scales = mode, float(strength), coarse_scales
        self.temperature = check_temperature(temperature)
        self.seed = None if seed is None else int(seed)
        self.filter_threshold = check_threshold(filter_threshold)
        self.confidence = check_probability(confidence, "confidence")
        self._labels_getter = default_labels_getter if labels_getter == "default" else labels_getter
        self._rng = WorkerRandomState(self.seed)
        self._num_classes, self._levels = model.num_classes, model.levels
        self._shape = tuple(int(s) for s in model.event_shape)
        self.stats = {"unlabelled_augmented": 0, "unlabelled_kept": 0}
        self._warned_unlabelled = False
        self.bank = self._make_bank(bank, bank_size)
        self._strategy = (
            Resample(model, self.bank, self.temperature, self.filter_threshold)
            if mode == "resample"
            else Latent(model, self.strength, self.temperature, mask)
        )

    def _make_bank(self, bank: Any, bank_size: int) -> SyntheticBank | None:
        if isinstance(bank, SyntheticBank) and self.mode != "resample":
            raise ValueError("bank is used by mode='resample' only; pass bank=None.")
        if bank is None or bank is False or self.mode != "resample":
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
        if bank.num_classes != self._num_classes or bank.event_shape != self._shape:
            raise ValueError(
                f"bank holds {bank.num_classes} classes of shape {list(bank.event_shape)} but the "
                f"model has {self._num_classes} classes of shape {list(self._shape)}; build "
                "the bank from the same model."
            )
        return bank

    def __repr__(self) -> str:
        # the default nn.Module repr would print the whole flow inside every Compose
        bank = None if self.bank is None else f"{self.bank.n_per_class}/class"
        return (
            f"FlowAugment(model={type(self.model).__name__}{list(self._shape)}, p={self.p}, "
            f"mode={self.mode!r}, strength={self.strength}, temperature={self.temperature}, "
            f"bank={bank}, seed={self.seed}, filter_threshold={self.filter_threshold}, "
            f"coarse_scales={self.coarse_scales}, confidence={self.confidence})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Refresh the bank if its ``refresh_every`` says so (call it in the main process)."""
        if self.bank is not None:
            self.bank.refresh(epoch)

    # --- the torchvision hooks ----------------------------------------------------------------
    def forward(self, *inputs: Any) -> Any:
        """Transform one sample (image, ``(image, label)``, dict, ...) or a batch."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        leaves, label, singles, batches, rebuild = self._split(sample)
        out = list(leaves)
        # a batch takes a [B] label and single images a single one: in a sample holding both,
        # each kind takes the label only if it has that kind's shape
        single_label = label if not batches or label_like(label) else None
        for i in batches:
            batch_label = label if single_label is None or not singles else None
            out[i] = self._replace_batch(leaves[i], batch_label)
        if singles:
            for i in singles:
                self._check_image(leaves[i])
            single_label = self._label_value(single_label)
            if single_label is None:
                self._warn_unlabelled()
            params = self.make_params([leaves[i] for i in singles])
            if params["apply"]:
                params["label"] = single_label
                for i in singles:
                    out[i] = self.transform(leaves[i], params)
        if not any(map(is_not, out, leaves)):
            return sample  # nothing replaced: the sample itself
        return rebuild(out)

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
        out = self._strategy.one(x, label, self._rng)
        if isinstance(inpt, PIL.Image.Image):
            return tensor_to_pil(out, inpt.mode)
        if type(inpt) is Tensor:
            return out if out.shape == inpt.shape else out.reshape(inpt.shape)
        return tv_tensors.wrap(out, like=inpt)

    # --- samples and batches ------------------------------------------------------------------
    def _split(self, sample: Any) -> tuple[list[Any], Any, list[int], list[int], Callable]:
        """``(leaves, label, single images, batches, rebuild)`` of a sample as torchvision splits
        it, the images and batches as indices of leaves. One image, alone or with an int label,
        skips pytree flattening, which keeps the per-image cost near a tensor copy."""
        pair = type(sample) in (tuple, list) and len(sample) == 2
        image, label = sample if pair else (sample, None)
        if self._labels_getter is default_labels_getter:
            if self._is_single(image) and (
                label is None or type(label) is int or label_like(label)
            ):
                if pair:
                    return [image, label], label, [0], [], type(sample)
                return [image], None, [0], [], _first
            # aug(images, labels) after the DataLoader, with a [B] label tensor: the same
            # split tree_flatten would give, without its cost on every batch
            if pair and type(label) is Tensor and self._is_plain_batch(image):
                return [image, label], label, [], [0], type(sample)
        label = None if self._labels_getter is None else self._labels_getter(sample)
        leaves, spec = tree_flatten(sample)
        needs = self._needs_transform_list(leaves)
        images = [i for i, need in enumerate(needs) if need and leaves[i] is not label]
        batches = [i for i in images if self._is_batch(leaves[i])]
        singles = [i for i in images if i not in batches]
        return leaves, label, singles, batches, partial(tree_unflatten, treespec=spec)

    def _is_single(self, image: Any) -> bool:
        """Whether ``image`` is one image (not a batch) of a type FlowAugment transforms."""
        if type(image) is Tensor or type(image) is tv_tensors.Image:
            return image.ndim == len(self._shape) or (image.ndim == 2 and type(image) is Tensor)
        return isinstance(image, PIL.Image.Image)

    def _is_plain_batch(self, images: Any) -> bool:
        """Whether ``images`` is a batch ``[B, C, H, W]`` tensor (plain or ``tv_tensors.Image``)."""
        return type(images) in (Tensor, tv_tensors.Image) and self._is_batch(images)

    def _is_batch(self, leaf: Any) -> bool:
        return not isinstance(leaf, PIL.Image.Image) and leaf.ndim == len(self._shape) + 1

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
        index = (torch.rand(x.shape[0], generator=self._rng.torch) < self.p).nonzero().flatten()
        if y is not None:
            y = y[index]
        elif self._num_classes and index.numel():
            y, confident = self._flow_classes(x[index.to(x.device)])
            index, y = index[confident], y[confident]
        if index.numel() == 0:
            return images
        where, out = index.to(x.device), x.clone()
        replaced = x[where] if self._strategy.reads_pixels else x
        out[where] = self._strategy.batch(replaced, y, self._rng)
        return tv_tensors.wrap(out, like=images) if isinstance(images, tv_tensors.Image) else out

    def _flow_classes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """For images ``[B, C, H, W]`` without labels: the flow's class (argmax posterior),
        LongTensor ``[B]``, and whether its posterior reaches ``confidence``, bool ``[B]``
        (both on the CPU); counted in ``stats``."""
        with eval_mode(self.model):
            posterior = self.model.classify(model_input(x, self.model))
        confident = (posterior.amax(1) >= self.confidence).cpu()
        augmented = int(confident.sum())
        self.stats["unlabelled_augmented"] += augmented
        self.stats["unlabelled_kept"] += confident.numel() - augmented
        return posterior.argmax(1).cpu(), confident

    # --- checks -------------------------------------------------------------------------------
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

    def _label_value(self, label: Any) -> int | None:
        """The class of one image's label (``None``: none, or an unconditional model)."""
        return read_label(label, self._num_classes) if self._num_classes else None

    def _warn_unlabelled(self) -> None:
        if not self._warned_unlabelled and self._num_classes and self._labels_getter is not None:
            self._warned_unlabelled = True
            warnings.warn(unlabelled_warning(self.confidence), UserWarning, stacklevel=5)


def _check_model(model: Any, mode: str) -> ConditionalFlow:
    """``model`` if it is an image flow that ``mode`` can use, else a clear error."""
    if not isinstance(model, ConditionalFlow) or model.num_classes != 0:
        model = check_conditional_model(model)
    elif mode != "latent":
        raise ValueError(
            f"FlowAugment(mode={mode!r}) needs a class-conditional model, got an "
            f"unconditional {type(model).__name__} (num_classes=0); use mode='latent' "
            "(a variation of each input, its label untouched) or fit it with labels."
        )
    if len(model.event_shape) != 3:
        raise ValueError(
            f"FlowAugment needs an image model (event_shape [C, H, W]), got event_shape "
            f"{list(model.event_shape)}; for tables use flowaug.FlowOversampler."
        )
    return model
