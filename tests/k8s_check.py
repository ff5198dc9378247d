"""Offline checks of Kubernetes objects: schemas, the operator's chart, secrets, images.

No API server is needed. Built-in kinds are validated in strict mode (unknown fields are
errors) with kubernetes-validate; the operator's kinds (``DaskCluster`` ...) with jsonschema
against the CRD schemas shipped in ``dask_kubernetes``, made strict the same way.
"""

from __future__ import annotations

import copy
import functools
import pathlib
import re
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBE_VERSION = "1.30.0"
OPERATOR_GROUP = "kubernetes.dask.org"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


def operator_chart() -> pathlib.Path:
    """Directory of the dask-kubernetes-operator Helm chart shipped in ``dask_kubernetes``."""
    import dask_kubernetes

    return (pathlib.Path(dask_kubernetes.__file__).parent
            / "operator/deployment/helm/dask-kubernetes-operator")


def load_objects(path: pathlib.Path) -> list[dict[str, Any]]:
    """Every object of a (multi-document) YAML file."""
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_LOADER) if doc]


def _strict(schema: Any) -> Any:
    """Copy of an OpenAPI schema where objects with listed properties allow no others."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[str, dict[str, Any]]:
    """Strict JSON schemas of the operator's kinds, by kind, from the chart's CRDs."""
    schemas = {}
    for path in sorted((operator_chart() / "crds").glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=_LOADER)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
        schema["properties"].update(apiVersion={"const": f"{OPERATOR_GROUP}/v1"},
                                    kind={"const": crd["spec"]["names"]["kind"]},
                                    metadata={"type": "object"})
        schemas[crd["spec"]["names"]["kind"]] = schema
    return schemas


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(str(part) for part in error.absolute_path) or "(top)"


def object_errors(obj: dict[str, Any], *, kube_version: str = KUBE_VERSION) -> list[str]:
    """Problems of one object, empty when it is valid (strict: unknown fields are errors)."""
    label = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    if str(obj.get("apiVersion", "")).startswith(OPERATOR_GROUP + "/"):
        schema = crd_schemas().get(obj.get("kind"))
        if schema is None:
            return [f"{label}: no CRD for kind {obj.get('kind')!r}"]
        validator = jsonschema.Draft7Validator(schema)
        return [f"{label}: {_where(e)}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{label}: {_where(exc)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{label}: {exc.message}"]
    return []


def render_operator_chart(values: dict[str, Any], *, namespace: str = "dask-operator",
                          release: str = "dask-operator") -> list[dict[str, Any]]:
    """Lint (strict) and render the operator's chart with ``values``; return its objects.

    Raises
    ------
    AssertionError
        With helm's findings when the lint reports any warning or error.
    """
    import helm_python as helm

    chart = operator_chart()
    report = helm.lint(str(chart), values, strict=True, namespace=namespace,
                       kube_version=f"v{KUBE_VERSION}")
    findings = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not findings, f"helm lint: {findings}"
    with helm.Chart.load(str(chart)) as loaded:
        rendered = loaded.render(values, name=release, namespace=namespace, is_install=True)
    docs = [yaml.safe_load_all(text) for name, text in sorted(rendered.items())
            if name.endswith((".yaml", ".yml"))]
    return [obj for stream in docs for obj in stream if obj]


def lint_as_chart(manifests: list[pathlib.Path], workdir: pathlib.Path) -> dict[str, Any]:
    """Lint plain manifests with helm by wrapping them as templates of a throwaway chart."""
    import helm_python as helm

    chart = workdir / "manifests-chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: manifests-chart\nversion: 0.1.0\n"
        "icon: https://example.com/icon.png\n")
    (chart / "values.yaml").write_text("{}\n")
    for path in manifests:
        (chart / "templates" / path.name).write_text(path.read_text())
    return helm.lint(str(chart), strict=True, kube_version=f"v{KUBE_VERSION}")


def worker_view() -> dict[str, Any]:
    """What a worker process sees: pinned variables and dask's memory policy (run it there)."""
    import os

    import dask.config

    names = ("OMP_NUM_THREADS", "OPENCV_FOR_THREADS_NUM", "MALLOC_TRIM_THRESHOLD_")
    return {"env": {name: os.environ.get(name) for name in names},
            "pause": dask.config.get("distributed.worker.memory.pause"),
            "terminate": dask.config.get("distributed.worker.memory.terminate")}


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container (and init container) anywhere inside ``obj``."""
    found: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(c for c in value if isinstance(c, dict))
            found.extend(containers(value))
    elif isinstance(obj, list):
        for item in obj:
            found.extend(containers(item))
    return found


def literal_secrets(obj: dict[str, Any]) -> list[str]:
    """Places where a credential is written literally (Secret data, or an env ``value``)."""
    label = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    found = [f"{label}: Secret with literal {key}" for key in ("data", "stringData")
             if obj.get("kind") == "Secret" and obj.get(key)]
    for container in containers(obj):
        found += [f"{label}: env {e['name']} has a literal value"
                  for e in container.get("env") or []
                  if _SECRET_NAME.search(e.get("name", "")) and "value" in e]
    return found


def unpinned_images(obj: dict[str, Any]) -> list[str]:
    """Container images with no tag, or the ``latest`` tag, and no digest."""
    bad = []
    for container in containers(obj):
        image = str(container.get("image", ""))
        last = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
            bad.append(image)
    return bad


DEPLOY = pathlib.Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
EXAMPLE_IMAGE = "registry.example.com/caiman-dask:0.1.0"
EXAMPLE_RESOURCES = {"requests": {"cpu": "2", "memory": "8Gi"},
                     "limits": {"cpu": "2", "memory": "8Gi"}}


def secret_env(secret: str = "s3-credentials") -> list[dict[str, Any]]:
    """S3 credentials as environment entries that reference a Secret."""
    keys = [("AWS_ACCESS_KEY_ID", "access-key-id", False),
            ("AWS_SECRET_ACCESS_KEY", "secret-access-key", False),
            ("AWS_ENDPOINT_URL", "endpoint-url", True)]
    refs = []
    for name, key, optional in keys:
        ref: dict[str, Any] = {"name": secret, "key": key}
        if optional:
            ref["optional"] = True
        refs.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return refs


def example_cluster() -> dict[str, Any]:
    """The DaskCluster that deploy/kubernetes/daskcluster.yaml holds, built by our builder."""
    from caiman_dask.cluster import resolve_settings
    from caiman_dask.cluster.kubernetes import kubernetes_spec

    spec = kubernetes_spec(resolve_settings(4), image=EXAMPLE_IMAGE, name="caiman-dask",
                           resources=EXAMPLE_RESOURCES, env=secret_env())
    manifest = copy.deepcopy(spec.options["custom_cluster_spec"])
    manifest["metadata"]["namespace"] = "caiman-dask"
    return manifest


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_example_cluster(path: pathlib.Path = DEPLOY / "daskcluster.yaml") -> None:
    """Rewrite the manifest from :func:`example_cluster`, keeping its comment header."""
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    path.write_text(header + yaml.dump(example_cluster(), Dumper=_NoAliases, sort_keys=False,
                                       width=99))


if __name__ == "__main__":  # python tests/k8s_check.py: regenerate daskcluster.yaml
    write_example_cluster()
