"""Movies: open any supported input lazily; write and open caiman-dask zarr stores."""

from caiman_dask.movie.model import Movie, MovieMetadata, SourceFile
from caiman_dask.movie.readers import open_movie
from caiman_dask.movie.store import to_zarr
from caiman_dask.movie.zarrio import open_store

__all__ = ["Movie", "MovieMetadata", "SourceFile", "open_movie", "open_store", "to_zarr"]
