"""TLS between client, scheduler and workers of batch-system clusters.

Batch-system backends use TLS by default: a scheduler on a login node listens on an
address every user of the cluster can reach, so its connections are encrypted and only
holders of the certificates may join or submit. Without certificates of the user's own,
:func:`batch_security` creates temporary ones (``Security.temporary()``, needs the
``cryptography`` package); dask-jobqueue writes the worker's copy into a directory shared
with the compute nodes (``caiman-dask.jobqueue.shared-temp-directory``) and removes it when
the cluster is closed.
"""

from __future__ import annotations

import os

from distributed.security import Security

from caiman_dask.errors import ParameterError

INSTALL_HINT = 'pip install "caiman-dask[jobqueue]"'


def batch_security(security: Security | bool | None, *, ca_file: str | None = None,
                   cert: str | None = None, key: str | None = None) -> Security | None:
    """The ``Security`` of a batch-system cluster.

    Parameters
    ----------
    security : Security, bool or None
        A ``distributed.security.Security`` to use as is; ``False`` for plain TCP;
        ``True`` or None for TLS (the user's files if given, else temporary certificates).
    ca_file, cert, key : str, optional
        The user's certificate authority, certificate and key files (PEM); the same
        certificate serves client, scheduler and workers.

    Raises
    ------
    ParameterError
        When only some of the files are given, one is missing, or ``cryptography`` is
        not installed for temporary certificates.
    """
    if isinstance(security, Security):
        return security
    if security is False:
        return None
    files = {"tls-ca-file": ca_file, "tls-cert": cert, "tls-key": key}
    if any(files.values()):
        return _from_files(files)
    try:
        return Security.temporary()
    except ImportError as exc:
        raise ParameterError(
            f"TLS with temporary certificates needs the 'cryptography' package: "
            f"{INSTALL_HINT}, give your own certificates (caiman-dask.jobqueue.tls-ca-file, "
            f"tls-cert, tls-key) or turn TLS off with caiman-dask.jobqueue.tls: false") from exc


def _from_files(files: dict[str, str | None]) -> Security:
    missing = [name for name, path in files.items() if not path]
    if missing:
        raise ParameterError(f"TLS certificate files: {', '.join(missing)} not given; give "
                             f"all of tls-ca-file, tls-cert and tls-key, or none of them")
    paths = {name: os.path.expanduser(str(path)) for name, path in files.items()}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise ParameterError(f"{name}={path!r} does not exist: give the PEM file's path "
                                 f"(on a file system the compute nodes also see)")
    ca, cert, key = paths["tls-ca-file"], paths["tls-cert"], paths["tls-key"]
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert,
                    tls_worker_key=key, require_encryption=True)


def shared_directory(path: str) -> str:
    """Create ``path`` (``~`` expanded) readable by its owner only; return it."""
    folder = os.path.expanduser(os.path.expandvars(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder

