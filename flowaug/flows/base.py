"""The contract every flowaug model and layer follows.

Layers map data to latents: ``forward(x, cond) -> (z, logdet)`` and ``inverse(z, cond) -> x``.
Whole models (:class:`ConditionalFlow`) map data in *model space* (float tensors, e.g. images in
``[0, 1]``) to a standard-normal latent ``eps`` of shape ``[B, D]`` and give ``log_prob``,
``sample``, ``encode`` and ``decode`` on top of that one map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowaug._checks import check_temperature
from flowaug.flows.checks import (
    check_finite_samples,
    check_float_tensor,
    evaluating,
    standard_normal_log_prob,
)
from flowaug.pixels import dequantize

__all__ = [
    "ConditionalFlow",
    "FlowLayer",
    "check_conditional_model",
    "check_finite_samples",
    "check_float_tensor",
    "evaluating",
    "standard_normal_log_prob",
]

class FlowLayer(nn.Module):
    """An invertible layer: ``forward(x, cond) -> (z, logdet)``, ``inverse(z, cond) -> x``.

    ``cond`` is a per-sample context (for flowaug, a class embedding ``[B, E]``) or ``None``;
    ``logdet`` is ``log|det dz/dx|`` per sample, shape ``[B]``.
    """

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        raise NotImplementedError


class ConditionalFlow(nn.Module):
    """Base class of whole models: class-conditional maps ``x -> eps ~ N(0, I)``.

    Subclasses implement :meth:`_forward` (``x -> (eps, logdet)``, ``eps`` of shape ``[B, D]``)
    and :meth:`_inverse` (``eps -> x``), and set ``event_shape``, ``num_classes`` and ``config``.
    Everything else (validation, ``log_prob``, ``sample``, persistence) is shared.

    Attributes:
        event_shape: shape of one sample in model space, e.g. ``(1, 8, 8)`` or ``(13,)``.
        num_classes: number of classes, or ``0`` for an unconditional model.
        config: JSON-serializable constructor arguments; ``type(self)(**config)`` rebuilds it.
    """

    event_shape: tuple[int, ...]
    num_classes: int
    config: dict[str, Any]
    #: the range of model-space inputs (``None``: any finite value); checked by ``encode`` and
    #: ``log_prob``, since values outside it give NaN densities rather than errors
    input_bounds: tuple[float, float] | None = None

    # --- to implement -------------------------------------------------------------------------
    def _forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _inverse(self, eps: Tensor, y: Tensor | None) -> Tensor:
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    @property
    def event_dim(self) -> int:
        """Number of scalar dimensions ``D`` of one sample."""
        return math.prod(self.event_shape)

    @property
    def latent_scale_sizes(self) -> list[int]:
        """Sizes of the parts of ``eps`` that belong to each scale, finest first; they sum to
        ``event_dim``. A single-scale flow has one part; multi-scale flows override this."""
        return [self.event_dim]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_labels(self, y: Any, batch_size: int | None = None) -> Tensor | None:
        """Validate labels: LongTensor ``[B]`` in ``[0, num_classes)``, or None if unconditional."""
        if self.num_classes == 0:
            if y is not None:
                y = torch.as_tensor(y)
                if batch_size is not None and y.numel() not in (0, batch_size):
                    raise ValueError(f"y has {y.numel()} labels for a batch of {batch_size}.")
            return None
        if y is None:
            raise ValueError(
                f"y is required: this model is class-conditional with {self.num_classes} classes."
            )
        if isinstance(y, int):
            y = torch.tensor([y])
        if isinstance(y, (list, tuple)) and len(y) == 0:
            y = torch.zeros(0, dtype=torch.long)  # as_tensor([]) would be float
        y = torch.as_tensor(y)
        if y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}.")
        y = y.long().reshape(-1)
        if batch_size is not None and y.shape[0] != batch_size:
            raise ValueError(f"y has {y.shape[0]} labels for a batch of {batch_size} samples.")
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"y holds class {int(y.min()) if y.min() < 0 else int(y.max())}, outside "
                f"[0, {self.num_classes - 1}] for this {self.num_classes}-class model."
            )
        return y.to(self.device)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Map data to the standard-normal latent.

        Args:
            x: float tensor ``[B, *event_shape]`` in model space.
            y: LongTensor ``[B]`` of classes (``None`` for unconditional models).

        Returns:
            ``eps``: float tensor ``[B, D]``, distributed ``N(0, I)`` under the model.
        """
        x = self._as_model_dtype(check_float_tensor("x", x, self.event_shape, self.input_bounds))
        return self._forward(x, self.check_labels(y, x.shape[0]))[0]

    def decode(self, eps: Tensor, y: Tensor | None = None) -> Tensor:
        """Exact inverse of :meth:`encode`: ``eps [B, D] -> x [B, *event_shape]``."""
        eps = self._as_model_dtype(check_float_tensor("eps", eps, (self.event_dim,)))
        return self._inverse(eps, self.check_labels(y, eps.shape[0]))

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Exact log-density of ``x`` given class ``y``, in nats, shape ``[B]``.

        In train mode (a freshly built model is), the first call initializes ActNorm from
        ``x`` and dropout is active; call ``model.eval()`` (models from ``fit`` and ``load``
        are) to evaluate a fixed density."""
        x = self._as_model_dtype(check_float_tensor("x", x, self.event_shape, self.input_bounds))
        eps, logdet = self._forward(x, self.check_labels(y, x.shape[0]))
        return standard_normal_log_prob(eps) + logdet

    def class_log_prob(self, x: Tensor) -> Tensor:
        """``log p(x | c)`` for every class ``c``: float tensor ``[B, num_classes]``."""
        if self.num_classes == 0:
            raise ValueError("class_log_prob needs a class-conditional model (num_classes > 0).")
        x = self._as_model_dtype(check_float_tensor("x", x, self.event_shape, self.input_bounds))
        cols = []
        for c in range(self.num_classes):
            y = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
            eps, logdet = self._forward(x, y)
            cols.append(standard_normal_log_prob(eps) + logdet)
        return torch.stack(cols, dim=1)

    def classify(self, x: Tensor, prior: Tensor | None = None) -> Tensor:
        """Class posterior ``p(c | x)`` by Bayes' rule, ``[B, num_classes]`` (probabilities;
        ``class_log_prob(x).log_softmax(1)`` for log-posteriors). Runs in eval mode, so it
        never changes the model (no ActNorm initialization, no dropout).

        Args:
            x: float tensor ``[B, *event_shape]`` in model space (any float dtype; cast to the
                model's).
            prior: class probabilities ``[num_classes]``, each finite and > 0 (normalized
                here); ``None`` for a uniform prior.
        """
        log_prior = None if prior is None else self._log_prior(prior)
        with evaluating(self):
            logits = self.class_log_prob(x)
        if log_prior is not None:
            logits = logits + log_prior.to(logits)
        return logits.softmax(dim=1)

    def _log_prior(self, prior: Any) -> Tensor:
        """``log prior [num_classes]`` of class probabilities (any positive scale)."""
        k = self.num_classes
        expected = f"{k} finite numbers > 0 (one class probability per class, any scale)"
        try:
            p = torch.as_tensor(prior, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"prior must be {expected}, got {prior!r} ({err}).") from err
        if p.shape != (k,):
            raise ValueError(f"prior must be {expected}, got shape {list(p.shape)}.")
        if not bool((torch.isfinite(p) & (p > 0)).all()):
            raise ValueError(
                f"prior must be {expected}, got {p.tolist()}; give a small positive weight "
                "instead of 0 to a class that is rare."
            )
        return p.log()

    def _as_model_dtype(self, x: Tensor) -> Tensor:
        """``x`` in the dtype of the model's parameters (float64 input is accepted and cast)."""
        param = next(self.parameters(), None)
        return x if param is None or x.dtype == param.dtype else x.to(param.dtype)

    @torch.no_grad()
    def sample(
        self,
        y: Tensor | int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        num_samples: int | None = None,
    ) -> Tensor:
        """Draw samples in model space, without gradients (as ``torch.distributions``'
        ``sample``: for samples that gradients flow through, use :meth:`rsample_with_log_prob`).

        Args:
            y: LongTensor ``[B]`` of classes (one sample per entry); for unconditional models
                pass ``num_samples`` instead.
            temperature: scale of the latent noise; ``< 1`` gives cleaner, less diverse samples.
            generator: a ``torch.Generator`` (on the model's device) for reproducible draws.
            num_samples: number of samples for unconditional models.

        Returns:
            float tensor ``[B, *event_shape]``.

        Raises:
            ValueError: a sample holds NaN or inf (damaged weights, or too high a temperature).
        """
        temperature = check_temperature(temperature)
        labels, n = self._sample_labels(y, num_samples)
        self._check_draw_size(n, "num_samples" if num_samples is not None else "len(y)")
        eps = torch.randn(n, self.event_dim, generator=generator, device=self.device)
        return check_finite_samples(self._inverse(eps * temperature, labels), temperature)

    def _check_draw_size(self, n: int, argument: str) -> None:
        """Refuse drawing ``n`` samples at once when they cannot fit in memory."""
        from flowaug.sizes import check_count_in_memory, flow_sample_bytes

        check_count_in_memory(
            n,
            flow_sample_bytes(self),
            argument,
            "draw fewer at a time (loop over chunks), or use flowaug.sampling.iter_synthetic.",
        )

    def _sample_labels(self, y: Any, num_samples: int | None) -> tuple[Tensor | None, int]:
        """``(labels [n] or None, n)`` for a draw: ``y`` one class per sample, or one class
        (an int) repeated ``num_samples`` times; unconditional models count ``num_samples``."""
        if num_samples is not None and (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, (int, np.integer))
            or num_samples < 0
        ):
            raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}.")
        if num_samples is not None:
            self._check_draw_size(int(num_samples), "num_samples")
        if self.num_classes == 0:
            if num_samples is None:
                num_samples = 1 if y is None else torch.as_tensor(y).numel()
            return None, int(num_samples)
        one_class = isinstance(y, (int, np.integer)) or (isinstance(y, Tensor) and y.ndim == 0)
        if num_samples is not None:
            if not one_class:
                labels = self.check_labels(y)
                if labels.shape[0] != num_samples:
                    raise ValueError(
                        f"num_samples={num_samples} but y holds {labels.shape[0]} labels; pass "
                        "one class (an int) with num_samples, or one label per sample alone."
                    )
                return labels, num_samples
            y = torch.full((int(num_samples),), int(y), dtype=torch.long)
        labels = self.check_labels(y)
        return labels, labels.shape[0]

    def rsample_with_log_prob(
        self,
        y: Tensor | int | None = None,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Reparameterized samples and their exact log-density, for variational inference.

        Gradients flow from both outputs to the parameters, so ``(log_target(x) - log_q).mean()``
        is an ELBO estimate that can be maximized directly.

        Both passes run without dropout and never initialize ActNorm from the samples
        (there is no data to initialize from: a fresh model starts as the identity there), so
        ``log_q`` is the density of ``x`` under the same weights in train mode too.

        Returns:
            ``x``: float tensor ``[B, *event_shape]``; ``log_q``: tensor ``[B]`` in nats.
        """
        labels, n = self._sample_labels(y, num_samples)
        for norm in self._actnorms():
            norm.initialized.fill_(True)
        with evaluating(self):  # gradients still flow: eval only turns dropout off
            eps = torch.randn(n, self.event_dim, generator=generator, device=self.device)
            x = self._inverse(eps, labels)
            # the layers return log-dets of the data-to-noise direction only: re-encode to
            # get log q(x) = log N(eps) + log|det d eps / dx| exactly (and differentiably)
            eps_again, logdet = self._forward(x, labels)
        return x, standard_normal_log_prob(eps_again) + logdet

    @torch.no_grad()
    def initialize(self, x: Tensor, y: Tensor | None = None) -> None:
        """Data-dependent initialization (ActNorm) from a batch; a no-op for models without it.

        Deterministic in ``(x, y)``: every process that calls it with the same batch ends with
        the same parameters.
        """
        x = self._as_model_dtype(check_float_tensor("x", x, self.event_shape))
        norms = self._actnorms()
        for m in norms:
            m.initialized.fill_(False)
        # ActNorm initializes only in train mode; dropout is moot here because every coupling
        # starts as the identity
        with evaluating(self, train=True):
            self._forward(x, self.check_labels(y, x.shape[0]))
        for m in norms:
            m.initialized.fill_(True)

    def _actnorms(self) -> list[nn.Module]:
        """The layers with data-dependent initialization (an ``initialized`` flag: ActNorm)."""
        return [m for m in self.modules() if isinstance(getattr(m, "initialized", None), Tensor)]

    @property
    def levels(self) -> int | None:
        """Intensity levels of the integer data the model is for (``None`` for continuous data)."""
        return self.config.get("levels")

    def prepare_batch(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Raw data batch -> model space; the trainer calls it on every batch.

        Integer tensors are dequantized with fresh uniform noise (``levels`` from the config);
        float tensors are taken as already in model space.
        """
        if isinstance(x, Tensor) and not x.is_floating_point() and x.dtype != torch.bool:
            if self.levels is None:
                raise TypeError(
                    f"x has integer dtype {x.dtype} but this model has no `levels`; pass float "
                    "data in model space."
                )
            return dequantize(x, self.levels, generator=generator)
        return check_float_tensor("x", x, self.event_shape)

    @torch.no_grad()
    def bits_per_dim(
        self,
        x: Tensor,
        y: Tensor | None = None,
        levels: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Negative log-likelihood in bits/dim, ``[B]``, of a raw batch, in eval mode.

        Integer data (e.g. images ``[B, C, H, W]`` in ``[0, levels - 1]``) is dequantized with
        ``generator``'s uniform noise and reported in discrete terms, ``-log2 P(x) / D`` with
        ``P`` the probability of the integer data (a one-sample stochastic lower bound, as
        published numbers are); float data in model space gives continuous bits/dim.

        Args:
            x: integer or float tensor ``[B, *event_shape]``.
            y: LongTensor ``[B]`` of classes (``None`` for unconditional models).
            levels: intensity levels of integer ``x`` (default: the model's ``levels``).
            generator: for the dequantization noise.
        """
        discrete = not x.is_floating_point()
        if discrete and levels is not None:
            x01 = dequantize(x, levels, generator=generator)
        else:
            x01 = self.prepare_batch(x, generator)
            levels = self.levels if discrete else None
        with evaluating(self):  # a metric: never initializes ActNorm or draws dropout
            return self.bits_per_dim_from_log_prob(self.log_prob(x01.to(self.device), y), levels)

    def nll_bits_per_dim(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """:meth:`bits_per_dim` at the model's own ``levels`` (its older signature)."""
        return self.bits_per_dim(x, y, generator=generator)

    def bits_per_dim_from_log_prob(self, log_prob: Tensor, levels: int | None = None) -> Tensor:
        """Convert ``log p(x)`` of model-space data to bits/dim.

        With ``levels`` the result is in discrete terms: the density of data in ``[0, 1]`` is
        rescaled to integer units (``+ D * log(levels)``), as published numbers are.
        """
        nll = -log_prob
        if levels is not None:
            nll = nll + self.event_dim * math.log(levels)
        return nll / (self.event_dim * math.log(2))

    # --- persistence ----------------------------------------------------------------------------
    def save_pretrained(self, directory: str, class_names: Sequence[str] | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` (created if needed)."""
        from flowaug.io import save_model

        save_model(self, directory, class_names=class_names)

    @classmethod
    def from_pretrained(cls, directory: str, map_location: str | torch.device = "cpu"):
        """Load a model written by :meth:`save_pretrained` (never unpickles)."""
        from flowaug.io import load

        model = load(directory, map_location=map_location)
        if not isinstance(model, cls):
            raise TypeError(
                f"{directory} holds a {type(model).__name__}, not a {cls.__name__}; "
                "use flowaug.load(directory) to load whatever it holds."
            )
        return model


def check_conditional_model(model: Any, name: str = "model") -> ConditionalFlow:
    """``model`` if it is a class-conditional flowaug model, else a clear error."""
    if not isinstance(model, ConditionalFlow):
        raise TypeError(
            f"{name} must be a flowaug model (a ConditionalFlow such as flowaug.Glow), got "
            f"{type(model).__name__}; train one with flowaug.fit or load one with flowaug.load."
        )
    if model.num_classes < 1:
        raise ValueError(
            f"{name} is unconditional (num_classes=0); synthetic data for augmentation needs a "
            "class-conditional model: fit it with labels."
        )
    return model
