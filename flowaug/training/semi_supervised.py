"""Semi-supervised fitting: unlabelled examples enter through the flow's own class posterior.

A class-conditional flow gives ``p(x | y)`` for every class, hence by Bayes' rule a posterior
``q(y | x) ∝ pi_y p(x | y)``. For an unlabelled ``x`` the training objective is the
class-marginal likelihood ``log sum_y pi_y p(x | y)`` (FlowGMM), whose gradient with respect to
the flow is ``sum_y q(y | x) grad log p(x | y)``. Drawing ``y ~ q(y | x)`` and back-propagating
``log p(x | y)`` estimates that gradient without bias at the cost of *one* pass, where the exact
sum costs one pass per class; the posterior of the whole unlabelled pool is refreshed every
``refresh_every`` steps (a generalized EM), so a step costs what a labelled step costs.

Two ways to use the posterior (``TrainConfig.semi_supervised``):

- ``"marginal"``: every unlabelled example, with a class drawn from its posterior (the
  stochastic class-marginal likelihood above);
- ``"pseudo"``: only examples whose posterior is at least ``pseudo_threshold``, with their most
  probable class (confident pseudo-labels, refreshed during training).

The class prior ``pi`` is uniform (default), given (``TrainConfig.class_prior``), or learned
(``class_prior="learn"``: at every refresh it is re-estimated from the labelled classes and the
unlabelled posteriors, the EM update of mixture weights). By default the pool's posteriors are
aligned to the prior (``align_posteriors``: their mean over the pool matches ``pi``), which stops
one class from claiming ever more of the pool from refresh to refresh.

Why these defaults (measured on digits, 600 steps, the flow's own classifier on pool images):

- a learned prior without alignment let one class take 41% of a balanced pool (accuracy 87% ->
  65% during training); aligned to a fixed prior, the same run ended at 90%;
- the labelled examples' class shares are the wrong prior when labels were collected unevenly:
  with 3 classes labelled 5 times and 7 labelled 50 times over a balanced pool, aligning to
  those shares held the rare classes' recall at 35%, a uniform prior gave 93% and a learned
  one 84%. Give ``class_prior`` when the pool's class shares are known to be uneven.

References:
    Semi-Supervised Learning with Normalizing Flows (Izmailov et al., 2020)
    https://arxiv.org/abs/2003.13722
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowaug.flows.base import evaluating
from flowaug.seeding import generator

__all__ = [
    "SEMI_SUPERVISED_MODES",
    "stream_indices",
    "class_log_posteriors",
    "align_to_prior",
    "draw_labels",
    "estimate_prior",
]

SEMI_SUPERVISED_MODES = ("marginal", "pseudo")


def stream_indices(n: int, start: int, count: int, seed: int, key: str) -> Tensor:
    """Positions ``[start, start + count)`` of an endless stream of seeded permutations of
    ``range(n)`` (epoch ``e`` is ``randperm(n)`` seeded by ``(seed, key, e)``).

    A pure function of its arguments, so a resumed run draws the same batches; ``count`` may
    exceed ``n`` (a batch then spans several epochs).

    Returns:
        LongTensor ``[count]`` of indices in ``[0, n)``.
    """
    parts, pos, end = [], start, start + count
    while pos < end:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=generator(seed, key, epoch))
        take = min(n - offset, end - pos)
        parts.append(perm[offset : offset + take])
        pos += take
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def class_log_posteriors(
    model: nn.Module, x: Tensor, log_prior: Tensor, batch_size: int, device: torch.device
) -> Tensor:
    """``log q(y | x)`` for every row of ``x`` under the model in eval mode.

    Args:
        model: a class-conditional flow (``class_log_prob``).
        x: float tensor ``[N, *event_shape]`` in model space (on any device).
        log_prior: ``log pi``, float tensor ``[num_classes]``.
        batch_size: rows per forward pass.
        device: where to run the passes.

    Returns:
        float tensor ``[N, num_classes]`` on the CPU; rows are log-probabilities.
    """
    out = []
    with evaluating(model):
        for chunk in x.split(batch_size):
            logits = model.class_log_prob(chunk.to(device)).float()
            out.append((logits + log_prior.to(logits.device)).log_softmax(1).cpu())
    return torch.cat(out)


def align_to_prior(log_posterior: Tensor, prior: Tensor, iterations: int = 10) -> Tensor:
    """Posteriors rescaled per class so that their mean over the pool matches ``prior``.

    Without it, a class whose density happens to be broad claims more and more unlabelled
    examples from refresh to refresh (measured on digits: one class ended with 41% of the pool
    and the flow's accuracy fell from 87% to 65%). Alternating the class rescaling with the
    per-row normalization (Sinkhorn) is the distribution alignment of ReMixMatch
    (Berthelot et al., 2019, https://arxiv.org/abs/1911.09785), applied to the whole pool.

    Args:
        log_posterior: float tensor ``[N, num_classes]`` of log-probabilities.
        prior: float tensor ``[num_classes]`` summing to 1.
        iterations: Sinkhorn iterations.

    Returns:
        float tensor ``[N, num_classes]`` of log-probabilities.
    """
    log_prior = prior.log().to(log_posterior)
    out = log_posterior
    for _ in range(iterations):
        column = torch.logsumexp(out, dim=0) - torch.log(torch.tensor(float(out.shape[0])))
        out = (out + log_prior - column).log_softmax(1)
    return out


def draw_labels(
    log_posterior: Tensor, mode: str, threshold: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Classes and weights for unlabelled rows.

    Args:
        log_posterior: float tensor ``[B, num_classes]`` of log-probabilities.
        mode: ``"marginal"`` (a class drawn from the posterior, weight 1) or ``"pseudo"``
            (the most probable class, weight 1 where its probability is ``>= threshold``, else 0).
        threshold: the confidence ``"pseudo"`` needs.
        gen: the CPU generator of the draw.

    Returns:
        ``(labels, weights)``: LongTensor ``[B]`` and float tensor ``[B]``.
    """
    probs = log_posterior.exp()
    if mode == "marginal":
        labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        return labels, torch.ones(labels.shape[0])
    confidence, labels = probs.max(1)
    return labels, (confidence >= threshold).float()


def estimate_prior(labels: Tensor, log_posterior: Tensor, num_classes: int) -> Tensor:
    """Mixture weights from labelled classes and unlabelled posteriors (the EM update).

    Args:
        labels: LongTensor ``[N_l]`` of the labelled rows' classes.
        log_posterior: float tensor ``[N_u, num_classes]``.
        num_classes: number of classes.

    Returns:
        float tensor ``[num_classes]`` summing to 1; no class below ``1e-3 / num_classes``, so
        that no class is ever ruled out.
    """
    counts = torch.bincount(labels, minlength=num_classes).double()
    counts = counts + log_posterior.double().exp().sum(0)
    prior = counts / counts.sum()
    prior = prior.clamp_min(1e-3 / num_classes)
    return (prior / prior.sum()).float()


class SemiSupervisedBatches:
    """The batches of a semi-supervised run and the unlabelled pool's posteriors.

    Before ``start`` a batch holds ``batch_size`` labelled rows; from then on
    ``round(batch_size * unlabelled_fraction)`` of its rows come from the unlabelled pool, each
    with a class from the posterior table (refreshed every ``refresh_every`` steps) and a weight.
    Every draw is a pure function of ``(seed, step)`` and the table, so a run resumed with the
    table from its checkpoint continues exactly.

    Arguments:
        labelled_x, labelled_y: the labelled rows ``[N_l, ...]`` (raw: integer images stay
            integer) and their classes ``[N_l]``.
        pool_x: the unlabelled rows ``[N_u, ...]``, raw.
        num_classes: classes of the model.
        config: the run's ``TrainConfig``.
        prepare: ``prepare(x_raw, generator) -> x`` in model space (dequantization).
    """

    def __init__(self, labelled_x, labelled_y, pool_x, num_classes, config, prepare):
        self.labelled_x, self.labelled_y, self.pool_x = labelled_x, labelled_y, pool_x
        self.num_classes = num_classes
        self.config = config
        self.prepare = prepare
        self.start = config.warmup_steps if config.unlabelled_start is None else (
            config.unlabelled_start
        )
        self.refresh_every = config.refresh_every or config.eval_every
        self.unlabelled_batch = int(round(config.batch_size * config.unlabelled_fraction))
        self.labelled_batch = config.batch_size - self.unlabelled_batch
        self.learn_prior = config.class_prior == "learn"
        if isinstance(config.class_prior, list):
            self.prior = torch.tensor(config.class_prior, dtype=torch.float32)
        elif self.learn_prior:  # the labelled classes' shares, then EM updates
            self.prior = estimate_prior(labelled_y, torch.zeros(0, num_classes), num_classes)
        else:
            self.prior = torch.full((num_classes,), 1.0 / num_classes)
        self.log_posterior: Tensor | None = None

    def needs_refresh(self, step: int) -> bool:
        """Whether the posteriors are recomputed before step ``step``."""
        if step < self.start or not self.unlabelled_batch:
            return False
        return (step - self.start) % self.refresh_every == 0 or self.log_posterior is None

    def refresh(self, model: nn.Module, step: int, device: torch.device, batch_size: int) -> None:
        """Recompute the pool's posteriors with the current weights (and the prior, if learned)."""
        with evaluating(model):
            x = self.prepare(self.pool_x, generator(self.config.seed, "refresh", step))
        log_posterior = class_log_posteriors(model, x, self.prior.log(), batch_size, device)
        if self.learn_prior:
            self.prior = estimate_prior(self.labelled_y, log_posterior, self.num_classes)
        if self.config.align_posteriors:
            log_posterior = align_to_prior(log_posterior, self.prior)
        self.log_posterior = log_posterior

    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """The global batch of step ``step``: ``(x_raw [B, ...], y [B], weights [B])``."""
        seed = self.config.seed
        n_l, n_u = len(self.labelled_y), self.pool_x.shape[0]
        if step < self.start or not self.unlabelled_batch:
            size = self.config.batch_size
            index = stream_indices(n_l, step * size, size, seed, "lab-warm")
            return self.labelled_x[index], self.labelled_y[index], torch.ones(size)
        t = step - self.start
        lab = stream_indices(n_l, t * self.labelled_batch, self.labelled_batch, seed, "lab")
        unl = stream_indices(n_u, t * self.unlabelled_batch, self.unlabelled_batch, seed, "unl")
        labels, weights = draw_labels(
            self.log_posterior[unl],
            self.config.semi_supervised,
            self.config.pseudo_threshold,
            generator(seed, "pseudo", step),
        )
        x = torch.cat([self.labelled_x[lab], self.pool_x[unl]])
        y = torch.cat([self.labelled_y[lab], labels])
        w = torch.cat([torch.ones(len(lab)), weights * self.config.unlabelled_weight])
        return x, y, w

    def state_tensors(self) -> dict[str, Tensor]:
        """What a checkpoint keeps: the posterior table and the prior."""
        out = {"prior": self.prior}
        if self.log_posterior is not None:
            out["log_posterior"] = self.log_posterior
        return out

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        if "prior" in tensors:
            self.prior = tensors["prior"].float()
        self.log_posterior = tensors.get("log_posterior")
