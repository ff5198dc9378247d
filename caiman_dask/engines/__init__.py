"""Engines: the per-block / per-patch maths the drivers call, built-in or CaImAn's own.

Both engines expose the same two functions:

- ``register_block(frames, template, params, *, ready=None) -> BlockResult`` (motion of a
  block of frames, :func:`caiman_dask.motion.correct_block`'s contract);
- ``fit_patch(frames, params) -> PatchResult`` (CNMF on one patch array or
  :class:`~caiman_dask.cnmf.frames.FrameSource`,
  :func:`caiman_dask.cnmf.fit_patch`'s contract).

``get_engine("builtin")`` (the default) needs nothing beyond this package;
``get_engine("caiman")`` needs CaImAn importable and raises a clear
:class:`~caiman_dask.errors.BackendError` otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from caiman_dask.errors import BackendError

#: Engine names and the module implementing each.
ENGINES = {"builtin": "caiman_dask.engines.builtin", "caiman": "caiman_dask.engines.caiman"}
DEFAULT_ENGINE = "builtin"


@dataclass(frozen=True)
class Engine:
    """One engine's two task functions."""

    name: str
    register_block: Callable[..., Any]
    fit_patch: Callable[..., Any]


def get_engine(name: str | None = None) -> Engine:
    """Return the engine called ``name`` (default ``"builtin"``).

    Raises
    ------
    BackendError
        For an unknown name, or ``"caiman"`` when CaImAn cannot be imported.
    """
    name = DEFAULT_ENGINE if name is None else name
    if name not in ENGINES:
        raise BackendError(f"unknown engine {name!r}; choose one of {sorted(ENGINES)}")
    module = importlib.import_module(ENGINES[name])
    if hasattr(module, "check_available"):
        module.check_available()
    return Engine(name, module.register_block, module.fit_patch)


__all__ = ["DEFAULT_ENGINE", "ENGINES", "Engine", "get_engine"]
