"""Tables: column encoders (a DataFrame <-> model-space vectors, by column kind), the check that a
table has a model's columns, and :class:`TabularFlow`, the DataFrame-facing table model."""

from flowaug.tabular.categorical import (
    CategoricalColumn,
    ConstantColumn,
    LabelEncoder,
    unlabelled_rows,
)
from flowaug.tabular.columns import ColumnEncoder, column_names, dtype_family
from flowaug.tabular.encoder import TableEncoder, column_from_config, fit_column
from flowaug.tabular.model import TabularFlow
from flowaug.tabular.numeric import ContinuousColumn, IntegerColumn
from flowaug.tabular.schema import check_frame, short_names

__all__ = [
    "CategoricalColumn", "ColumnEncoder", "ConstantColumn", "ContinuousColumn", "IntegerColumn",
    "LabelEncoder", "TableEncoder", "TabularFlow", "check_frame", "column_from_config",
    "column_names", "dtype_family", "fit_column", "short_names", "unlabelled_rows",
]
