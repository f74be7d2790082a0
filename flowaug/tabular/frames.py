"""Synthetic rows of a table model, decoded in chunks of rows: the float intermediates of decoding
(the flow's inverse, the column decoders) never exist for all rows at once, and a request that
cannot fit at all is refused up front.

The latent noise of all rows is drawn in one call exactly as ``model.sample`` draws it, so a
chunked frame holds the same rows as one decoded at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from flowaug._checks import check_temperature
from flowaug.flows.checks import check_finite_samples, evaluating
from flowaug.sizes import check_count_in_memory

__all__ = ["FRAME_CHUNK_ROWS", "check_frame_size", "sample_frame"]

#: rows decoded together by ``sample_frame``; a request of more rows is cut into chunks
FRAME_CHUNK_ROWS = 65_536


def check_frame_size(
    model: Any, rows: int, n_per_class: Any, argument: str = "n_per_class"
) -> None:
    """Refuse a ``sample_frame(n_per_class)`` of ``rows`` rows in all whose noise and
    DataFrame cannot fit. Per row: the float32 latent noise (``event_dim`` values) and 8 bytes
    per output column.
    """
    per_row = model.event_dim * 4 + 8 * max(len(model.encoder.order), 1)
    check_count_in_memory(
        rows,
        per_row,
        argument,
        "ask for fewer rows per call and write each frame out before the next.",
        shown=n_per_class,
    )


@torch.no_grad()
def sample_frame(
    model: Any, counts: Sequence[int], temperature: float, seed: int | None
) -> pd.DataFrame:
    """``counts[c]`` synthetic rows of class ``c`` (one count for an unconditional model) from a
    table model in eval mode, classes in order, decoded ``FRAME_CHUNK_ROWS`` at a time."""
    temperature = check_temperature(temperature)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=model.device).manual_seed(int(seed))
    rows, y = sum(counts), None
    if model.num_classes:
        y = torch.repeat_interleave(torch.arange(model.num_classes), torch.tensor(counts))
        y = y.to(model.device)
    frames = []
    with evaluating(model):
        eps = torch.randn(rows, model.event_dim, generator=generator, device=model.device)
        for start in range(0, max(rows, 1), FRAME_CHUNK_ROWS):  # one (empty) chunk for 0 rows
            part = slice(start, start + FRAME_CHUNK_ROWS)
            labels = None if y is None else y[part]
            x = check_finite_samples(model._inverse(eps[part] * temperature, labels), temperature)
            frames.append(model.decode_frame(x, labels))
    return pd.concat(frames, ignore_index=True)
