"""Adapters from flowaug's models to other libraries' data pipelines."""
