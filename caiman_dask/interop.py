"""Opt-in: CaImAn's own ``setup_cluster(backend="dask")`` and ``stop_server`` use caiman-dask.

After :func:`install`, an unchanged CaImAn script that calls
``cm.cluster.setup_cluster(backend="dask", n_processes=...)`` gets a cluster started by
:func:`caiman_dask.setup_cluster`, and its ``cm.stop_server(dview=dview)`` closes that
cluster again. Every other backend goes to CaImAn's own functions unchanged.

CaImAn's ``CNMF.fit_file`` calls ``caiman.cluster.stop_server(dview=self.dview)`` itself
(caiman-facts.md). A call made from inside CaImAn's package therefore only cancels the
view's unfinished tasks: the cluster stays up for the user's next call. A dview the
user started with :func:`caiman_dask.setup_cluster` directly is never closed by CaImAn's
``stop_server`` either; close it with :func:`caiman_dask.stop_server`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from caiman_dask.cluster.setup import setup_cluster, stop_server
from caiman_dask.errors import BackendError
from caiman_dask.view.base import BaseView

#: The ``backend`` name that CaImAn's ``setup_cluster`` hands to caiman-dask.
BACKEND_NAME = "dask"

# (module, attribute) -> CaImAn's original function, while installed.
_ORIGINALS: dict[tuple[Any, str], Callable[..., Any]] = {}
# The views started through CaImAn's patched setup_cluster (ours to close).
_STARTED_VIA_CAIMAN: list[BaseView] = []


def _import_caiman() -> tuple[Any, Any]:
    """``(caiman, caiman.cluster)``, or a BackendError saying how to get CaImAn."""
    try:
        caiman = importlib.import_module("caiman")
        cluster = importlib.import_module("caiman.cluster")
    except ImportError as exc:
        raise BackendError(
            f"caiman_dask.install() needs CaImAn importable ({exc}); install CaImAn "
            f"(conda install -c conda-forge caiman) in this environment first"
        ) from exc
    return caiman, cluster


def install() -> None:
    """Make CaImAn's ``setup_cluster(backend="dask")`` and ``stop_server`` use caiman-dask.

    Idempotent. Patches ``caiman.cluster.setup_cluster``, ``caiman.cluster.stop_server``
    and ``caiman.stop_server`` in this process; :func:`uninstall` restores them.

    Raises
    ------
    BackendError
        If CaImAn cannot be imported.
    """
    if _ORIGINALS:
        return
    caiman, cluster = _import_caiman()
    targets = [(cluster, "setup_cluster", _dask_setup_cluster),
               (cluster, "stop_server", _dask_stop_server),
               (caiman, "stop_server", _dask_stop_server)]
    for module, name, factory in targets:
        original = getattr(module, name)
        _ORIGINALS[(module, name)] = original
        setattr(module, name, factory(original))


def uninstall() -> None:
    """Restore CaImAn's own ``setup_cluster`` and ``stop_server`` (no-op if not installed)."""
    for (module, name), original in list(_ORIGINALS.items()):
        setattr(module, name, original)
    _ORIGINALS.clear()


def is_installed() -> bool:
    """True while :func:`install` is in effect."""
    return bool(_ORIGINALS)


def _dask_setup_cluster(original: Callable[..., Any]) -> Callable[..., Any]:
    def setup_cluster_for_caiman(backend: str = "multiprocessing", n_processes: int | None = None,
                                 single_thread: bool = False, ignore_preexisting: bool = False,
                                 maxtasksperchild: int | None = None,
                                 **options: Any) -> tuple[Any, Any, int]:
        if backend != BACKEND_NAME:
            if options:
                raise BackendError(f"options {sorted(options)} are only accepted with "
                                   f"backend={BACKEND_NAME!r}, not {backend!r}")
            return original(backend, n_processes, single_thread, ignore_preexisting,
                            maxtasksperchild)
        if single_thread:
            return None, None, 1
        client, dview, n_threads = setup_cluster(n_processes=n_processes, **options)
        _STARTED_VIA_CAIMAN.append(dview)
        return client, dview, n_threads

    setup_cluster_for_caiman.__doc__ = (
        f"CaImAn's setup_cluster; backend={BACKEND_NAME!r} starts a caiman-dask cluster "
        f"(further keyword options go to caiman_dask.setup_cluster).")
    return setup_cluster_for_caiman


def _dask_stop_server(original: Callable[..., Any]) -> Callable[..., Any]:
    def stop_server_for_caiman(ipcluster: str = "ipcluster", pdir: str | None = None,
                               profile: str | None = None, dview: Any = None) -> None:
        if not isinstance(dview, BaseView):
            return original(ipcluster, pdir, profile, dview)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        ours = any(view is dview for view in _STARTED_VIA_CAIMAN)
        if caller.split(".")[0] == "caiman" or not ours:
            dview.terminate()  # fit_file's own stop, or a cluster the user holds
            return None
        _STARTED_VIA_CAIMAN[:] = [view for view in _STARTED_VIA_CAIMAN if view is not dview]
        stop_server(dview)
        return None

    stop_server_for_caiman.__doc__ = (
        "CaImAn's stop_server; a caiman-dask dview started by CaImAn's setup_cluster "
        "(backend='dask') is closed, any other caiman-dask dview only cancels its tasks.")
    return stop_server_for_caiman
