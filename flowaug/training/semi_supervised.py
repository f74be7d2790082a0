"""Semi-supervised fitting: unlabelled examples enter through the flow's own class posterior.

A class-conditional flow gives ``p(x | y)`` for every class, hence by Bayes' rule a posterior
``q(y | x) ∝ pi_y p(x | y)``. For an unlabelled ``x`` the training objective is the
class-marginal likelihood ``log sum_y pi_y p(x | y)`` (FlowGMM), whose gradient with respect to
the flow is ``sum_y q(y | x) grad log p(x | y)``. Drawing ``y ~ q(y | x)`` and back-propagating
``log p(x | y)`` estimates that gradient without bias at the cost of *one* pass, where the exact
sum costs one pass per class; the posterior of the whole unlabelled pool is refreshed every
``refresh_every`` steps (a generalized EM), so a step costs what a labelled step costs. In
``"pseudo"`` mode only confident examples take part, with their most probable class
(``TrainConfig.semi_supervised``); the batches are drawn by
:class:`flowaug.training.batches.SemiSupervisedBatches`.

The class prior ``pi`` is uniform (default), given or learned by EM (``TrainConfig.class_prior``);
by default the pool's posteriors are aligned to it (:func:`align_to_prior`). Why these defaults
(measured on digits, 600 steps, the flow's own classifier on pool images): a learned prior
without alignment let one class take 41% of a balanced pool (accuracy 87% -> 65% during
training), aligned to a fixed prior the same run ended at 90%; and the labelled examples' class
shares are the wrong prior when labels were collected unevenly: with 3 classes labelled 5 times
and 7 labelled 50 times over a balanced pool, aligning to those shares held the rare classes'
recall at 35%, a uniform prior gave 93% and a learned one 84%.

References:
    Semi-Supervised Learning with Normalizing Flows (Izmailov et al., 2020)
    https://arxiv.org/abs/2003.13722
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowaug.flows.checks import evaluating

__all__ = [
    "SEMI_SUPERVISED_MODES", "class_log_posteriors", "align_to_prior", "draw_labels",
    "estimate_prior",
]  # fmt: skip

SEMI_SUPERVISED_MODES = ("marginal", "pseudo")


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
    examples from refresh to refresh. Alternating the class rescaling with the per-row
    normalization (Sinkhorn) is the distribution alignment of ReMixMatch (Berthelot et al.,
    2019, https://arxiv.org/abs/1911.09785), applied to the whole pool.

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
