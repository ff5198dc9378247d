"""``python -m caiman_dask`` is the ``caiman-dask`` command."""

import sys

from caiman_dask.cli import main

sys.exit(main())
