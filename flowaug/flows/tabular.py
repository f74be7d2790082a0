"""TabularFlow: a class-conditional normalizing flow for feature vectors and DataFrames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from flowaug.columns import TableEncoder, redequantize
from flowaug.flows.base import ConditionalFlow, check_float_tensor, evaluating
from flowaug.flows.layers import ActNorm, AffineCoupling, GaussianPrior, InvConv1x1
from flowaug.flows.spline import SplineCoupling
from flowaug.frame_sampling import FRAME_CHUNK_ROWS, check_frame_size, sample_frame_in_chunks

__all__ = ["TabularFlow"]

_COUPLINGS = ("spline", "affine")


def _within_class_whitening(h: Tensor, y: Tensor | None) -> Tensor:
    """``W [D, D]`` (float64) with ``W S W^T = I`` for the shrunk pooled within-class covariance.

    ``S`` is shrunk toward a multiple of the identity with the Ledoit-Wolf weight, which keeps it
    well conditioned when there are fewer rows than dimensions.
    """
    h = h.double()
    resid = h - h.mean(0)
    if y is not None:
        resid = h.clone()
        for c in y.unique():
            resid[y == c] -= h[y == c].mean(0)
    n, d = resid.shape
    if float(resid.pow(2).sum()) <= 1e-12 * max(float(h.pow(2).sum()), 1.0):
        # no within-class spread (one row per class): whiten the pooled spread instead, or
        # nothing at all, rather than blow up by 1/sqrt(0)
        resid = h - h.mean(0)
        if float(resid.pow(2).sum()) <= 1e-24:
            return torch.eye(d, dtype=h.dtype, device=h.device)
    cov = resid.T @ resid / n
    target = cov.trace() / d
    delta = (cov - target * torch.eye(d, dtype=cov.dtype, device=cov.device)).pow(2).sum()
    # sum_k ||r_k r_k^T - S||_F^2 without forming n matrices
    beta = (resid.pow(2).sum(1).pow(2).sum() - n * cov.pow(2).sum()) / n**2
    alpha = 1.0 if delta <= 0 else float((beta / delta).clamp(0, 1))
    shrunk = alpha * target * torch.eye(d, dtype=cov.dtype, device=cov.device)
    shrunk = shrunk + (1 - alpha) * cov
    evals, evecs = torch.linalg.eigh(shrunk)
    evals = evals.clamp_min(1e-6 * float(evals.max().clamp_min(1e-12)))
    return evecs @ torch.diag(evals.rsqrt()) @ evecs.T


def _set_lu_weight(layer: InvConv1x1, weight: Tensor) -> None:
    """Set an :class:`InvConv1x1` so that its matrix is ``weight`` (``[C, C]``, invertible)."""
    perm, lower, upper = torch.linalg.lu(weight.double())
    diag = torch.diagonal(upper)
    layer.perm.copy_(perm)
    layer.lower.copy_(lower)
    layer.upper.copy_(torch.triu(upper, 1))
    layer.sign_s.copy_(torch.sign(diag))
    layer.log_s.copy_(diag.abs().log())


class TabularFlow(ConditionalFlow):
    """Class-conditional flow for feature vectors ``[B, D]``, with optional column encoders.

    ``depth`` steps of ``ActNorm -> LU linear map -> coupling`` (rational-quadratic spline or
    affine), then a class-conditional diagonal Gaussian; the class enters through a learned
    embedding that conditions every coupling and the prior. With ``num_features == 1`` there is
    nothing to couple with, so every coupling is an elementwise spline set by the class alone
    (whichever ``coupling`` is asked for) and there is no linear map.

    Built with :meth:`from_frame`, the model holds a :class:`~flowaug.columns.TableEncoder`:
    :meth:`encode_frame` turns a DataFrame into model-space tensors and :meth:`sample_frame`
    returns synthetic rows with the original columns, dtypes, categories and label values. The
    encoder lives in ``config``, so ``save_pretrained`` / ``from_pretrained`` restore it.

    References:
        Neural Spline Flows (Durkan et al., 2019) https://arxiv.org/abs/1906.04032

        Glow (Kingma & Dhariwal, 2018) https://arxiv.org/abs/1807.03039

    Arguments:
        num_features: model-space dimensions ``D`` (``encoder.dim`` when built from a frame).
        num_classes: number of classes; ``None`` or ``0`` for an unconditional model.
        depth: number of flow steps.
        hidden: width of the coupling networks.
        cond_dim: size of the class embedding.
        coupling: ``"spline"`` (rational-quadratic, default) or ``"affine"``.
        bins: spline bins.
        bound: the splines act on ``[-bound, bound]`` (model space is standardized).
        dropout: dropout inside coupling networks (regularizes small-data fits).
        clamp: bound on affine coupling log-scales.
        noise_std: in training mode, :meth:`prepare_batch` adds Gaussian noise of this standard
            deviation to continuous dimensions (noise regularization for tiny data; 0 = off).
        columns: a :meth:`TableEncoder.to_config` dict (set by :meth:`from_frame`), or ``None``.

    Example:
        >>> df = pd.DataFrame({"a": [0.1, 0.5, 0.9, 1.3], "k": [1, 2, 2, 3],
        ...                    "c": ["x", "y", "x", "z"], "label": ["no", "no", "yes", "yes"]})
        >>> model = TabularFlow.from_frame(df, label="label", depth=2, hidden=16)
        >>> x, y = model.encode_frame(df, seed=0)
        >>> x.shape, y.tolist()
        (torch.Size([4, 5]), [0, 0, 1, 1])
        >>> model.log_prob(x, y).shape
        torch.Size([4])
        >>> synth = model.sample_frame({"yes": 3}, seed=0)
        >>> list(synth.columns), synth.dtypes.astype(str).tolist(), synth["label"].tolist()
        (['a', 'k', 'c', 'label'], ['float64', 'int64', 'str', 'str'], ['yes', 'yes', 'yes'])
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int | None = None,
        depth: int = 4,
        hidden: int = 64,
        cond_dim: int = 8,
        coupling: str = "spline",
        bins: int = 8,
        bound: float = 4.0,
        dropout: float = 0.0,
        clamp: float = 2.0,
        noise_std: float = 0.0,
        columns: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if (
            isinstance(num_features, bool)
            or not isinstance(num_features, (int, np.integer))
            or num_features < 1
        ):
            raise ValueError(f"num_features must be an integer >= 1, got {num_features!r}.")
        num_classes = int(num_classes or 0)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}.")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}.")
        if coupling not in _COUPLINGS:
            raise ValueError(f"coupling must be one of {_COUPLINGS}, got {coupling!r}.")
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}.")
        num_features = int(num_features)

        self.encoder = None if columns is None else TableEncoder.from_config(dict(columns))
        if self.encoder is not None:
            if self.encoder.dim != num_features or self.encoder.num_classes != num_classes:
                raise ValueError(
                    f"columns describe {self.encoder.dim} model dimensions and "
                    f"{self.encoder.num_classes} classes, but num_features={num_features} and "
                    f"num_classes={num_classes}; build the model with TabularFlow.from_frame."
                )
        self.event_shape = (num_features,)
        self.num_classes = num_classes
        self.config = dict(
            num_features=num_features,
            num_classes=num_classes,
            depth=int(depth),
            hidden=int(hidden),
            cond_dim=int(cond_dim),
            coupling=coupling,
            bins=int(bins),
            bound=float(bound),
            dropout=float(dropout),
            clamp=float(clamp),
            noise_std=float(noise_std),
            columns=None if self.encoder is None else self.encoder.to_config(),
        )
        labels = self.encoder.label if self.encoder is not None else None
        # a plain attribute: flowaug.io.load assigns it after building the model
        self.class_names: list[str] | None = (
            [str(c) for c in labels.classes] if labels is not None else None
        )

        cond = cond_dim if num_classes else 0
        self.embedding = nn.Embedding(num_classes, cond_dim) if num_classes else None
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers.append(ActNorm(num_features))
            if num_features > 1:
                layers.append(InvConv1x1(num_features))
            if coupling == "affine" and num_features > 1:
                layers.append(
                    AffineCoupling(
                        num_features, hidden, cond, spatial=False, dropout=dropout, clamp=clamp
                    )
                )
            else:
                layers.append(SplineCoupling(num_features, hidden, cond, bins, bound, dropout))
        self.layers = nn.ModuleList(layers)
        self.prior = GaussianPrior((num_features,), cond)

        self._groups = self.encoder.discrete_groups() if self.encoder is not None else []
        mean = self.encoder.mean if self.encoder is not None else np.zeros(num_features)
        std = self.encoder.std if self.encoder is not None else np.ones(num_features)
        mask = self.encoder.continuous_mask() if self.encoder is not None else [True] * num_features
        # derived from config, so not saved with the weights (persistent=False)
        self.register_buffer("_enc_mean", torch.tensor(mean, dtype=torch.float32), False)
        self.register_buffer("_enc_std", torch.tensor(std, dtype=torch.float32), False)
        self.register_buffer("_continuous", torch.tensor(mask, dtype=torch.float32), False)

    # --- the flow -------------------------------------------------------------------------------
    def _cond(self, y: Tensor | None) -> Tensor | None:
        return None if self.embedding is None or y is None else self.embedding(y)

    def _forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        cond = self._cond(y)
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, cond)
            logdet = logdet + ld
        eps, ld = self.prior(x, cond)
        return eps, logdet + ld

    def _inverse(self, eps: Tensor, y: Tensor | None) -> Tensor:
        cond = self._cond(y)
        x = self.prior.inverse(eps, cond)
        for layer in reversed(self.layers):
            x = layer.inverse(x, cond)
        return x

    @torch.no_grad()
    def initialize(self, x: Tensor, y: Tensor | None = None) -> None:
        """Data-dependent initialization: the model starts as a fitted per-class Gaussian.

        Layer by layer on the batch: every ActNorm standardizes its input; the last linear map
        whitens the pooled within-class covariance (Ledoit-Wolf shrinkage, so a few rows in
        many dimensions are fine); the prior's mean and scale for each class are set to that
        class's mean and (shrunk) standard deviation. The couplings start as the identity, so
        training begins from a shared-covariance Gaussian per class, the classic small-data
        model, and the flow only has to learn what departs from it. Deterministic in ``(x, y)``.

        Args:
            x: float tensor ``[B, D]`` in model space (``encode_frame`` output).
            y: LongTensor ``[B]`` of classes (``None`` for unconditional models).
        """
        check_float_tensor("x", x, self.event_shape)
        y = self.check_labels(y, x.shape[0])
        norms = [m for m in self.modules() if isinstance(m, ActNorm)]
        was_training = self.training
        self.eval()  # no dropout; ActNorm initializes only in training mode
        for m in norms:
            m.initialized.fill_(False)
            m.train()
        try:
            cond = self._cond(y)
            h = x.to(self.device)
            mixes = [m for m in self.layers if isinstance(m, InvConv1x1)]
            for layer in self.layers:
                if mixes and layer is mixes[-1]:
                    _set_lu_weight(layer, _within_class_whitening(h, y))
                h, _ = layer(h, cond)
        finally:
            self.train(was_training)
            for m in norms:
                m.initialized.fill_(True)
        self._init_prior(h, y)

    def _init_prior(self, h: Tensor, y: Tensor | None) -> None:
        """Set ``GaussianPrior`` so that ``mu_c, sigma_c`` match class ``c``'s rows of ``h``."""
        h = h.double()
        classes = list(range(self.num_classes)) if self.num_classes else [None]
        members = [
            torch.ones_like(h[:, 0], dtype=torch.bool) if c is None else y == c for c in classes
        ]
        means = [h[m].mean(0) if m.any() else h.mean(0) for m in members]
        resid = torch.cat([h[m] - mu for m, mu in zip(members, means, strict=True)])
        pooled = (
            resid.pow(2).mean(0).clamp_min(1e-6)
            if resid.shape[0] > len(classes)
            else torch.ones_like(h[0])
        )
        targets = []
        for m, mu in zip(members, means, strict=True):
            n = int(m.sum())
            own = (h[m] - mu).pow(2).mean(0).clamp_min(1e-6) if n > 1 else pooled
            # a few rows give a noisy scale: shrink its log toward the pooled within-class one
            w = n / (n + 2.0)
            log_sigma = (0.5 * (w * own.log() + (1 - w) * pooled.log())).clamp(-2.9, 2.9)
            targets.append(torch.cat([mu, 3.0 * torch.atanh(log_sigma / 3.0)]))
        target = torch.stack(targets)  # [K, 2D] raw prior parameters per class
        prior = self.prior
        if prior.cond is None or self.embedding is None:
            prior.base.copy_(target[0].to(prior.base))
            return
        # base + W e_c = target_c for every class: least squares in (base, W), minimal norm
        emb = self.embedding.weight.double()
        design = torch.cat([torch.ones_like(emb[:, :1]), emb], dim=1)
        solution = torch.linalg.lstsq(design.cpu(), target.cpu(), driver="gelsd").solution
        prior.base.copy_(solution[0].to(prior.base))
        prior.cond.weight.copy_(solution[1:].T.to(prior.cond.weight))
        prior.cond.bias.zero_()

    def prepare_batch(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Model-space batch ``[B, D]`` -> the same rows with fresh noise, for training.

        Discrete columns (integers, categories) get fresh dequantization noise inside their
        cells, so every epoch sees new continuous points for the same records; in training mode
        continuous dimensions also get Gaussian noise of std ``noise_std`` (if set).
        """
        if isinstance(x, Tensor) and not x.is_floating_point():
            raise TypeError(
                f"x must be a float tensor in model space, got dtype {x.dtype}; encode tables "
                "with model.encode_frame(df)."
            )
        check_float_tensor("x", x, self.event_shape)
        mean, std = self._enc_mean.to(x), self._enc_std.to(x)
        x = redequantize(x, self._groups, mean, std, generator)
        noise_std = self.config["noise_std"]
        if self.training and noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + noise_std * noise * self._continuous.to(x)
        return x

    # --- DataFrames -----------------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        label: Any = None,
        categorical: Sequence[Any] | None = None,
        continuous: str = "standard",
        impute: str | None = None,
        clip: bool = True,
        **model_kwargs: Any,
    ) -> TabularFlow:
        """An untrained model with column encoders learned from ``df``.

        Args:
            df: the training table.
            label: name of the class column (``None``: unconditional model).
            categorical: extra columns to treat as categorical (object, str, category and bool
                columns always are).
            continuous: ``"standard"`` or ``"quantile"`` (see :meth:`TableEncoder.fit`).
            impute: ``None`` (missing values raise), ``"mean"`` or ``"mode"``.
            clip: clip sampled numbers into the observed ``[min, max]`` of each column.
            **model_kwargs: ``depth``, ``hidden``, ... (see the class docstring).
        """
        for key in ("num_features", "num_classes", "columns"):
            if key in model_kwargs:
                raise TypeError(f"from_frame sets {key} from the data; do not pass it.")
        enc = TableEncoder.fit(df, label, categorical, continuous, impute, clip)
        if enc.dim == 0:
            raise ValueError(
                "every feature column of df is constant (or there are none): nothing to model."
            )
        return cls(enc.dim, enc.num_classes, columns=enc.to_config(), **model_kwargs)

    def _require_encoder(self, what: str) -> TableEncoder:
        if self.encoder is None:
            raise ValueError(
                f"{what} needs column encoders; build the model with TabularFlow.from_frame(df)."
            )
        return self.encoder

    def check_frame(self, df: pd.DataFrame, what: str = "df", exact: bool = False) -> None:
        """Refuse a table whose columns are not the model's (names, dtypes, categories; with
        ``exact`` also no other columns and the same order). See
        :func:`flowaug.table_schema.check_frame`."""
        from flowaug.table_schema import check_frame

        check_frame(self._require_encoder("check_frame"), df, what, exact)

    def encode_frame(
        self, df: pd.DataFrame, seed: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """DataFrame -> model-space tensors.

        Args:
            df: a table with the columns the model was built from (same dtype families and
                categories; other columns are ignored).
            seed: for the dequantization noise of discrete columns.

        Returns:
            ``x``: float tensor ``[N, D]`` (the model's dtype and device), and ``y``: LongTensor
            ``[N]`` of class indices, or ``None`` if ``df`` has no label column.
        """
        enc = self._require_encoder("encode_frame")
        self.check_frame(df)
        x = enc.encode(df, seed=seed)
        y = enc.encode_labels(df)
        param = next(self.parameters())
        xt = torch.as_tensor(x, dtype=param.dtype, device=param.device)
        yt = None if y is None else torch.as_tensor(y, dtype=torch.long, device=param.device)
        return xt, yt

    def decode_frame(self, x: Tensor, y: Tensor | None = None) -> pd.DataFrame:
        """Model-space ``x [N, D]`` (+ class indices ``y [N]``) -> DataFrame of original dtypes."""
        enc = self._require_encoder("decode_frame")
        labels = None if y is None else torch.as_tensor(y).detach().cpu().numpy()
        return enc.assemble(enc.decode(x), labels)

    def _class_counts(self, n_per_class: int | Mapping[Any, int]) -> list[int]:
        enc = self._require_encoder("sample_frame")

        def check(n: Any, what: str) -> int:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise ValueError(f"{what} must be an integer >= 0, got {n!r}.")
            return int(n)

        k = max(self.num_classes, 1)
        if isinstance(n_per_class, Mapping):
            if enc.label is None:
                raise ValueError(
                    "n_per_class is a dict but the model is unconditional; pass an int."
                )
            counts = [0] * k
            for value, n in n_per_class.items():
                counts[enc.label.index(value)] = check(n, f"n_per_class[{value!r}]")
            return counts
        return [check(n_per_class, "n_per_class")] * k

    @torch.no_grad()
    def sample_frame(
        self,
        n_per_class: int | Mapping[Any, int],
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Synthetic rows as a DataFrame with the original columns, dtypes and label values.

        Args:
            n_per_class: rows per class (an int for every class, or ``{label value: rows}``).
            temperature: latent noise scale; ``< 1`` gives more typical, less diverse rows.
            seed: for reproducible draws (same seed, same rows).

        Returns:
            DataFrame in the training table's column order, classes in label order.

        Raises:
            ValueError: the rows cannot fit in memory (the estimate is in the message). Large
                counts are generated and decoded in chunks of ``FRAME_CHUNK_ROWS`` rows.
        """
        counts = self._class_counts(n_per_class)
        check_frame_size(self, sum(counts), n_per_class)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        y = None
        if self.num_classes:
            y = torch.repeat_interleave(torch.arange(self.num_classes), torch.tensor(counts))
            y = y.to(self.device)
        with evaluating(self):
            if sum(counts) <= FRAME_CHUNK_ROWS:
                x = self.sample(y, temperature, generator, None if y is not None else counts[0])
                return self.decode_frame(x, y).reset_index(drop=True)
            return sample_frame_in_chunks(self, y, sum(counts), temperature, generator)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"num_features={cfg['num_features']}, num_classes={cfg['num_classes']}, "
            f"coupling={cfg['coupling']!r}"
        )
