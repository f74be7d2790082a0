"""Large ``TabularFlow.sample_frame`` requests: refused up front when they cannot fit, and
otherwise decoded in chunks of rows, so that the float intermediates of decoding (the flow's
inverse, the column decoders) never exist for all rows at once.

The latent noise of all rows is drawn in one call exactly as ``model.sample`` draws it, so a
chunked frame holds the same rows as one decoded at once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import Tensor

from flowaug._checks import check_temperature
from flowaug.flows.base import check_finite_samples
from flowaug.sizes import check_count_in_memory

__all__ = ["FRAME_CHUNK_ROWS", "check_frame_size", "sample_frame_in_chunks"]

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


def sample_frame_in_chunks(
    model: Any,
    y: Tensor | None,
    rows: int,
    temperature: float,
    generator: torch.Generator | None,
) -> pd.DataFrame:
    """``rows`` synthetic rows of a table model (in eval mode), decoded ``FRAME_CHUNK_ROWS`` at
    a time; ``y`` holds one class per row, or is ``None`` for an unconditional model."""
    temperature = check_temperature(temperature)
    eps = torch.randn(rows, model.event_dim, generator=generator, device=model.device)
    frames = []
    for start in range(0, rows, FRAME_CHUNK_ROWS):
        part = slice(start, start + FRAME_CHUNK_ROWS)
        labels = None if y is None else y[part]
        x = check_finite_samples(model._inverse(eps[part] * temperature, labels), temperature)
        frames.append(model.decode_frame(x, labels))
    return pd.concat(frames, ignore_index=True)
