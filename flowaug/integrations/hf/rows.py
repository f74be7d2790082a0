"""The one row generator of the datasets hook: synthetic images as rows of a dataset's ``Features``.

``augment_dataset``, the stream and the shards all write the rows it yields; only the choice of
classes and of seeds is theirs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Features
from tqdm.auto import tqdm

from flowaug.flows.base import ConditionalFlow
from flowaug.integrations.hf.columns import SYNTHETIC_COLUMN, ImageCodec
from flowaug.pixels import model_to_image
from flowaug.sampling import iter_synthetic
from flowaug.seeding import derive_seed

__all__ = ["RowGenerator"]


@dataclass
class RowGenerator:
    """Rows of ``features``: a sample's image (snapped to the model's levels) and class, ``None``
    in the other columns, ``is_synthetic=True`` if ``features`` has that column. Picklable;
    its callers' fingerprints keep it out of datasets' hashing."""

    model: ConditionalFlow
    codec: ImageCodec
    features: Features
    image_column: str
    label_column: str
    temperature: float
    batch_size: int
    filter_threshold: float | None

    def rows(self, counts: Mapping[int, int], generator: torch.Generator) -> Iterator[dict]:
        """``counts[c]`` rows of each class ``c``, in :func:`flowaug.sampling.iter_synthetic`'s
        order."""
        empty: dict[str, Any] = dict.fromkeys(self.features)
        mark = {SYNTHETIC_COLUMN: True} if SYNTHETIC_COLUMN in self.features else {}
        batches = iter_synthetic(
            self.model, counts, self.temperature, generator, self.batch_size, self.filter_threshold
        )
        for x, y in batches:
            values = self.codec.encode(model_to_image(x, self.model.levels))
            for value, label in zip(values, y.tolist(), strict=True):
                yield {**empty, self.image_column: value, self.label_column: label, **mark}

    def seeded(self, counts: Mapping[int, int], seed: int, progress: bool) -> Iterator[dict]:
        """:meth:`rows` drawn from ``derive_seed(seed)``, with a progress bar."""
        generator = torch.Generator().manual_seed(derive_seed(seed))
        total = sum(counts.values())
        with tqdm(total=total, desc="flowaug: sampling", disable=not progress) as bar:
            for row in self.rows(counts, generator):
                yield row
                bar.update()
