"""The one row generator of the datasets hook: synthetic images as rows of a dataset's ``Features``.

:func:`~flowaug.integrations.hf.augment_dataset`, the shards and the stream all write the rows
it yields; only the choice of classes and of seeds is theirs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Features

from flowaug.flows.base import ConditionalFlow
from flowaug.integrations.hf.columns import SYNTHETIC_COLUMN, ImageCodec
from flowaug.pixels import model_to_image
from flowaug.sampling import iter_synthetic
from flowaug.seeding import derive_seed

__all__ = ["RowGenerator"]


@dataclass
class RowGenerator:
    """Synthetic rows: the encoded image and its class, ``None`` in the other columns of
    ``features``, and ``is_synthetic=True`` when ``mark``. Kept out of datasets' hashing by the
    callers' fingerprints; picklable for workers."""

    model: ConditionalFlow
    codec: ImageCodec
    features: Features
    image_column: str
    label_column: str
    temperature: float
    batch_size: int
    filter_threshold: float | None
    mark: bool = True

    def rows(self, counts: Mapping[int, int], generator: torch.Generator) -> Iterator[dict]:
        """``counts[c]`` rows of each class ``c``, drawn with ``generator``, in
        :func:`flowaug.sampling.iter_synthetic`'s order; images snapped to the model's levels."""
        empty: dict[str, Any] = dict.fromkeys(self.features)
        for x, y in iter_synthetic(
            self.model, counts, self.temperature, generator, self.batch_size, self.filter_threshold
        ):
            values = self.codec.encode(model_to_image(x, self.model.levels))
            for value, label in zip(values, y.tolist(), strict=True):
                row = {**empty, self.image_column: value, self.label_column: label}
                if self.mark:
                    row[SYNTHETIC_COLUMN] = True
                yield row

    def seeded(self, counts: Mapping[int, int], seed: int, progress: bool) -> Iterator[dict]:
        """:meth:`rows` from a generator seeded ``derive_seed(seed)``, with a progress bar."""
        from tqdm.auto import tqdm

        generator = torch.Generator().manual_seed(derive_seed(seed))
        total = sum(counts.values())
        with tqdm(total=total, desc="flowaug: sampling", disable=not progress) as bar:
            for row in self.rows(counts, generator):
                yield row
                bar.update()
