"""The synthetic-movie generator for the tests lives in the package (used by the demo too)."""

from caiman_dask.cnmf.spatial import to_frames  # noqa: F401
from caiman_dask.synthetic import *  # noqa: F403
from caiman_dask.synthetic import SynthMovie, make_movie  # noqa: F401
