"""Kubernetes backend: a ``DaskCluster`` run by the dask-kubernetes operator.

The builder writes the whole ``DaskCluster`` object on the client, so it can be checked
offline (``tests/test_kubernetes.py``) and is exactly what the operator receives:

- Pod resources are the truth: each worker gets ``--nthreads`` = the pod's CPUs (limit,
  else request; at least 1) and ``--memory-limit`` = the pod's memory (limit, else request),
  so dask's nanny restarts a worker before the kernel's OOM killer ends the pod.
- The pod environment pins native thread pools to that thread count (a variable set in
  the pod wins over dask's ``pre-spawn-environ`` defaults), removes dask's
  ``MALLOC_TRIM_THRESHOLD_`` (see :mod:`caiman_dask.cluster.pinning`), and carries our
  scheduler and worker memory policy as ``DASK_*`` variables.
- Pods run as a non-root user without privilege escalation.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import uuid
from typing import Any

from caiman_dask import config
from caiman_dask.cluster.backends import (
    OPTIONAL_BACKENDS,
    ClusterSpec,
    cluster_policy,
    register_backend,
)
from caiman_dask.cluster.pinning import MALLOC_VARS_REMOVED
from caiman_dask.cluster.settings import WorkerSettings
from caiman_dask.errors import ClusterError, ParameterError

INSTALL_HINT = 'pip install "caiman-dask[kubernetes]"'

_SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(
    r"^([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse_quantity(value: str | int | float, *, what: str) -> float:
    """Value of a Kubernetes quantity (``"500m"``, ``"2"``, ``"4Gi"``, ``"1e9"``).

    Raises
    ------
    ParameterError
        Naming ``what`` when ``value`` is not a positive quantity.
    """
    match = _QUANTITY.match(str(value).strip())
    if match is None or float(match.group(1)) <= 0:
        raise ParameterError(
            f"{what}={value!r} is not a Kubernetes quantity: use e.g. '2', '500m', '4Gi'")
    return float(match.group(1)) * _SUFFIXES[match.group(2) or ""]


def _pick(resources: dict[str, Any], key: str) -> Any:
    """``limits[key]``, else ``requests[key]``, else fail saying what to set."""
    for group in ("limits", "requests"):
        if key in (resources.get(group) or {}):
            return resources[group][key]
    raise ParameterError(
        f"Kubernetes resources {resources!r} give no {key}: set resources['limits'][{key!r}] "
        f"(and 'requests'), which size each worker's threads and memory limit")


def worker_resources(resources: dict[str, Any] | None = None) -> dict[str, dict[str, str]]:
    """Worker pod resources: ``resources``, else the config's (requests = limits).

    Quantities become strings, as the DaskCluster schema requires.
    """
    if resources is None:
        each = {"cpu": config.get("kubernetes.worker-cpu"),
                "memory": config.get("kubernetes.worker-memory")}
        resources = {"requests": each, "limits": each}
    if (not isinstance(resources, dict) or set(resources) - {"requests", "limits"}
            or not all(isinstance(values, dict) for values in resources.values())):
        raise ParameterError(f"resources={resources!r}: give a dict with 'requests' and/or "
                             f"'limits', e.g. {{'limits': {{'cpu': '2', 'memory': '8Gi'}}}}")
    return {group: {k: str(v) for k, v in values.items()} for group, values in resources.items()}


def settings_for_pods(settings: WorkerSettings, resources: dict[str, Any]) -> WorkerSettings:
    """``settings`` with threads and memory limit taken from the worker pod's resources."""
    cpus = parse_quantity(_pick(resources, "cpu"), what="resources cpu")
    memory = parse_quantity(_pick(resources, "memory"), what="resources memory")
    if memory < 2**20:
        raise ParameterError(f"resources memory={_pick(resources, 'memory')!r} is below 1 MiB: "
                             f"use e.g. '4Gi' (in Kubernetes quantities 'm' means milli)")
    return dataclasses.replace(settings, threads_per_worker=max(1, math.floor(cpus)),
                               memory_limit=int(memory), pin_cpus=False)


def dask_env(dask_config: dict[str, Any]) -> dict[str, str]:
    """Dask config as ``DASK_*`` variables: ``"distributed.worker.memory.target"`` ->
    ``DASK_DISTRIBUTED__WORKER__MEMORY__TARGET``."""
    return {"DASK_" + "__".join(part.upper().replace("-", "_") for part in key.split(".")):
            str(value) for key, value in dask_config.items()}


def pod_env(settings: WorkerSettings, env: dict[str, str] | list[dict] | None) -> list[dict]:
    """Pod environment: the user's ``env`` (dict or Kubernetes list) plus ours.

    Raises
    ------
    ParameterError
        When ``env`` sets a variable we pin (thread counts, malloc, dask policy).
    """
    ours = {**settings.thread_env(), **dask_env(cluster_policy(settings)),
            "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": repr(dict.fromkeys(MALLOC_VARS_REMOVED))}
    given = [{"name": k, "value": str(v)} for k, v in env.items()] if isinstance(env, dict) \
        else list(env or [])
    clash = sorted({entry.get("name") for entry in given} & set(ours))
    if clash:
        raise ParameterError(f"env sets {clash}, which caiman-dask sets from the pod resources "
                             f"and its config: remove them from env")
    return given + [{"name": k, "value": v} for k, v in ours.items()]


def _secure(container: dict[str, Any]) -> None:
    container["securityContext"] = {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}}


def _pod_security(pod: dict[str, Any]) -> None:
    uid = int(config.get("kubernetes.run-as-user"))
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                              "fsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}}
    for container in pod["containers"]:
        _secure(container)


def cluster_manifest(settings: WorkerSettings, *, name: str, image: str,
                     resources: dict[str, dict[str, str]], env: list[dict]) -> dict[str, Any]:
    """The ``DaskCluster`` object for ``settings`` (already sized by :func:`settings_for_pods`)."""
    from dask_kubernetes.operator import make_cluster_spec

    command = ["dask", "worker", "--nthreads", str(settings.threads_per_worker),
               "--memory-limit", str(settings.memory_limit)]
    manifest = make_cluster_spec(name=name, image=image, n_workers=settings.n_workers,
                                 resources=resources, env=env, worker_command=command)
    scheduler = manifest["spec"]["scheduler"]["spec"]
    memory = str(config.get("kubernetes.scheduler-memory"))
    scheduler["containers"][0]["resources"] = {
        "requests": {"cpu": str(config.get("kubernetes.scheduler-cpu")), "memory": memory},
        "limits": {"memory": memory}}
    _pod_security(scheduler)
    _pod_security(manifest["spec"]["worker"]["spec"])
    return manifest


def check_image(image: str | None) -> str:
    """Return ``image`` if it names a pinned tag or digest, else fail saying what to do."""
    if not image:
        raise ParameterError(
            "backend 'kubernetes' needs image=... (or caiman-dask.kubernetes.image): build "
            "deploy/kubernetes/Dockerfile and push it with a version tag")
    tag = image.rsplit("/", 1)[-1]
    if "@" not in tag and (":" not in tag or tag.endswith(":latest")):
        raise ParameterError(
            f"image {image!r} is not pinned: give a version tag or digest (not 'latest'), so "
            f"that the client, scheduler and workers run the same caiman-dask")
    return image


def kubernetes_spec(settings: WorkerSettings, *, image: str | None = None,
                    resources: dict[str, Any] | None = None,
                    env: dict[str, str] | list[dict] | None = None,
                    adapt: int | None = None, name: str | None = None,
                    namespace: str | None = None, **options: Any) -> ClusterSpec:
    """Spec of a ``KubeCluster`` (dask-kubernetes operator) sized by pod resources.

    Parameters
    ----------
    settings : WorkerSettings
        Resolved settings; ``n_workers`` is kept, threads and memory come from ``resources``.
    image : str
        Pinned image of scheduler and workers (config ``kubernetes.image``).
    resources : dict, optional
        Worker pod ``{"requests": {...}, "limits": {...}}`` (config ``kubernetes.worker-*``).
    env : dict or list, optional
        Extra pod environment; list entries may use ``valueFrom.secretKeyRef``.
    adapt : int, optional
        Let the operator scale between ``n_workers`` and ``adapt`` workers.
    name, namespace : str, optional
        Cluster name (default ``caiman-dask-<random>``) and namespace (default: current).
    **options
        Passed to ``KubeCluster`` (e.g. ``resource_timeout``, ``shutdown_on_close``).
    """
    adapt = config.get("kubernetes.adapt-maximum", adapt)
    if adapt is not None and adapt < settings.n_workers:
        raise ParameterError(f"adapt={adapt} is below n_processes={settings.n_workers}: give "
                             f"the largest number of workers the cluster may grow to")
    pods = worker_resources(resources)
    sized = settings_for_pods(settings, pods)
    name = name or f"caiman-dask-{uuid.uuid4().hex[:8]}"
    manifest = cluster_manifest(sized, name=name, image=check_image(config.get(
        "kubernetes.image", image)), resources=pods, env=pod_env(sized, env))
    opts = {"custom_cluster_spec": manifest, "namespace": config.get("kubernetes.namespace",
            namespace), "quiet": True, **options}
    if adapt is not None:
        opts["adapt_range"] = (sized.n_workers, adapt)
    return ClusterSpec(start_kube_cluster, opts, sized, cluster_policy(sized))


def start_kube_cluster(*, adapt_range: tuple[int, int] | None = None, **options: Any) -> Any:
    """Create the ``KubeCluster`` and, with ``adapt_range``, turn on the operator's autoscaler.

    Raises
    ------
    ClusterError
        When no Kubernetes credentials are found (checked before any resource is created).
    """
    from dask_kubernetes.operator import KubeCluster

    options["namespace"] = kube_namespace(options.get("namespace"))
    cluster = KubeCluster(**options)
    if adapt_range is not None:
        cluster.adapt(minimum=adapt_range[0], maximum=adapt_range[1])
    return cluster


def kube_namespace(namespace: str | None) -> str:
    """``namespace``, or the current one of the kubeconfig / service account; checks access."""
    import kr8s

    try:
        api = kr8s.api(namespace=namespace) if namespace else kr8s.api()
    except Exception as exc:  # kr8s raises ValueError, OSError, ... for missing credentials
        raise ClusterError(
            f"backend 'kubernetes': cannot use the Kubernetes API ({exc}); set KUBECONFIG "
            f"(or run in a pod whose service account may create daskclusters) and check "
            f"`kubectl get daskclusters` works (docs/kubernetes.md)") from exc
    return namespace or api.namespace


if importlib.util.find_spec("dask_kubernetes") is not None:
    register_backend("kubernetes", kubernetes_spec)
else:
    OPTIONAL_BACKENDS["kubernetes"] = INSTALL_HINT
