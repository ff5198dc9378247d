"""The main job: ``run`` (convert -> motion -> CNMF -> evaluation -> results -> report)."""

from caiman_dask.pipeline.params import RunParams, resolve_params
from caiman_dask.pipeline.run import run

__all__ = ["RunParams", "resolve_params", "run"]
