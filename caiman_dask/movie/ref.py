"""A small, picklable pointer to a zarr array that tasks open on any worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zarr

from caiman_dask.movie.zarrio import ARRAY_NAME, zarr_store


@dataclass(frozen=True)
class ArrayRef:
    """Where a task finds a zarr array: no shared filesystem, only a path or URL.

    Attributes
    ----------
    path : str
        Local path or fsspec URL of the zarr group.
    storage_options : dict
        fsspec options (credentials travel with the task, never in results or logs).
    array : str
        Name of the array inside the group.
    """

    path: str
    storage_options: dict[str, Any] | None = field(default=None, repr=False)
    array: str = ARRAY_NAME

    def open(self, *, write: bool = False) -> zarr.Array:
        """Open the array for reading (or writing into existing chunks)."""
        store = zarr_store(self.path, self.storage_options, read_only=not write)
        array = zarr.open_group(store, mode="r+" if write else "r")[self.array]
        if write and hasattr(array, "with_config"):  # zarr >= 3.1
            array = array.with_config({"write_empty_chunks": True})  # skips a costly check
        return array
