"""Kubernetes backend and deploy/kubernetes, checked offline (no API server can run here).

The operator's chart is linted and rendered with helm-python-sdk; every object is validated
in strict mode (kubernetes-validate for built-in kinds, the operator's CRD schemas for
DaskCluster); the spec ``setup_cluster(backend="kubernetes")`` builds is validated too, and
its pod environment is run for real: a ``dask worker`` started with the manifest's
arguments and environment joins a scheduler with the threads, memory and policy we claim.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import k8s_check
import pytest
import yaml
from distributed import Client, LocalCluster

from caiman_dask import config
from caiman_dask.cluster import BACKENDS, resolve_settings, setup_cluster
from caiman_dask.cluster.backends import get_backend
from caiman_dask.cluster.kubernetes import (
    kubernetes_spec,
    parse_quantity,
    start_kube_cluster,
)
from caiman_dask.errors import ClusterError, ParameterError

DEPLOY = k8s_check.DEPLOY
MANIFESTS = ["namespace.yaml", "daskcluster.yaml", "job.yaml"]
VALUES = yaml.safe_load((DEPLOY / "operator-values.yaml").read_text())
IMAGE = k8s_check.EXAMPLE_IMAGE


def _spec(n_workers=3, **options):
    options.setdefault("image", IMAGE)
    return kubernetes_spec(resolve_settings(n_workers), **options)


def _worker(manifest):
    return manifest["spec"]["worker"]["spec"]["containers"][0]


def _env(container):
    return {e["name"]: e.get("value") for e in container["env"]}


# -- the operator's chart with our values -------------------------------------------------

def test_operator_chart_lints_renders_and_every_object_is_valid():
    objects = k8s_check.render_operator_chart(VALUES)
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    for obj in objects:
        assert k8s_check.object_errors(obj) == []
        assert k8s_check.unpinned_images(obj) == []
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    assert _first_image(deployment) == "ghcr.io/dask/dask-kubernetes-operator:2026.3.0"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def _first_image(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_operator_version_matches_the_image_constraints():
    pins = dict(line.split("==") for line in
                (DEPLOY / "constraints.txt").read_text().splitlines() if "==" in line)
    assert VALUES["image"]["tag"] == pins["dask-kubernetes"]


def test_chart_crds_are_valid_kubernetes_objects():
    for path in sorted((k8s_check.operator_chart() / "crds").glob("*.yaml")):
        for crd in k8s_check.load_objects(path):
            assert k8s_check.object_errors(crd) == [], path.name


# -- our manifests ------------------------------------------------------------------------

@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_in_strict_mode(name):
    objects = k8s_check.load_objects(DEPLOY / name)
    assert objects
    for obj in objects:
        assert k8s_check.object_errors(obj) == []
        assert k8s_check.literal_secrets(obj) == []
        assert k8s_check.unpinned_images(obj) == []


def test_manifests_lint_with_helm(tmp_path):
    report = k8s_check.lint_as_chart([DEPLOY / name for name in MANIFESTS], tmp_path)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_daskcluster_manifest_is_what_the_builder_builds():
    shipped = k8s_check.load_objects(DEPLOY / "daskcluster.yaml")[0]
    assert shipped == k8s_check.example_cluster(), (
        "deploy/kubernetes/daskcluster.yaml is stale: PYTHONPATH=. python tests/k8s_check.py")


def test_job_runs_the_pipeline_on_s3_against_the_manifests_scheduler():
    job = k8s_check.load_objects(DEPLOY / "job.yaml")[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["caiman-dask", "run", "s3://bucket/movie.zarr",
                                     "-o", "s3://bucket/out"]
    cluster = k8s_check.load_objects(DEPLOY / "daskcluster.yaml")[0]
    backend = container["args"][container["args"].index("--backend") + 1]
    assert backend == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
    assert container["image"] == _worker(cluster)["image"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert refs == dict.fromkeys(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                  "AWS_ENDPOINT_URL"], "s3-credentials")


def test_pods_run_as_the_dockerfiles_non_root_user():
    uid = int(config.get("kubernetes.run-as-user"))
    for name in MANIFESTS[1:]:
        for obj in k8s_check.load_objects(DEPLOY / name):
            users = set(re.findall(r"runAsUser: (\d+)", yaml.safe_dump(obj)))
            assert users == {str(uid)}, name
    assert f"USER {uid}:{uid}" in (DEPLOY / "Dockerfile").read_text()


# -- the checker catches mistakes ---------------------------------------------------------

def test_checker_catches_an_unknown_field_and_a_wrong_type():
    job = k8s_check.load_objects(DEPLOY / "job.yaml")[0]
    typo = copy.deepcopy(job)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert any("imagePullPolice" in e for e in k8s_check.object_errors(typo))
    wrong = copy.deepcopy(job)
    wrong["spec"]["backoffLimit"] = "two"
    assert any("backoffLimit" in e for e in k8s_check.object_errors(wrong))


def test_checker_catches_errors_in_a_daskcluster():
    cluster = k8s_check.load_objects(DEPLOY / "daskcluster.yaml")[0]
    typo = copy.deepcopy(cluster)
    typo["spec"]["worker"]["replica"] = 4
    assert any("replica" in e for e in k8s_check.object_errors(typo))
    wrong = copy.deepcopy(cluster)
    _worker(wrong)["resources"]["limits"]["cpu"] = 2
    assert any("spec/worker/spec/containers/0/resources/limits/cpu" in e
               for e in k8s_check.object_errors(wrong))


def test_checker_catches_bad_values_in_the_operator_chart():
    bad = copy.deepcopy(VALUES)
    bad["securityContext"]["runAsUsr"] = 1000
    deployment = next(o for o in k8s_check.render_operator_chart(bad) if o["kind"] == "Deployment")
    assert any("runAsUsr" in e for e in k8s_check.object_errors(deployment))


def test_checker_catches_literal_secrets_and_unpinned_images():
    job = k8s_check.load_objects(DEPLOY / "job.yaml")[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"][1] = {"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2"}
    container["image"] = "registry.example.com/caiman-dask:latest"
    assert len(k8s_check.literal_secrets(job)) == 1
    assert k8s_check.unpinned_images(job) == ["registry.example.com/caiman-dask:latest"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "stringData": {"k": "v"}}
    assert k8s_check.literal_secrets(secret) == ["Secret/s: Secret with literal stringData"]


# -- the Dockerfile -----------------------------------------------------------------------

def test_dockerfile_is_pinned_slim_and_non_root():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    bases = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases)
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(line.upper().startswith("USER ") for line in lines[last_from:])
    installs = [line for line in lines if "pip install" in line]
    assert installs and all("--constraint" in line for line in installs)


def test_constraints_pin_every_dependency_exactly():
    lines = [line for line in (DEPLOY / "constraints.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[0-9][0-9A-Za-z.+-]*", x) for x in lines)
    names = {line.split("==")[0] for line in lines}
    assert {"dask", "distributed", "numpy", "scipy", "zarr", "dask-kubernetes", "s3fs",
            "opencv-python-headless"} <= names


# -- the builder --------------------------------------------------------------------------

def test_backend_is_registered():
    assert get_backend("kubernetes") is kubernetes_spec
    assert "kubernetes" in BACKENDS


def test_without_dask_kubernetes_the_backend_says_what_to_install():
    code = ("import sys; sys.modules['dask_kubernetes'] = None\n"
            "import caiman_dask.cluster.kubernetes\n"
            "from caiman_dask.cluster.backends import get_backend\n"
            "try:\n    get_backend('kubernetes')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    env = {**os.environ, "PYTHONPATH": str(DEPLOY.parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.startswith("BackendError") and 'pip install "caiman-dask[kubernetes]"' in out


def test_built_spec_validates_against_the_daskcluster_crd():
    spec = _spec(env={"EXTRA": "1"}, adapt=6)
    manifest = spec.options["custom_cluster_spec"]
    assert k8s_check.object_errors(manifest) == []
    assert k8s_check.literal_secrets(manifest) == []
    assert spec.cls is start_kube_cluster
    assert spec.options["adapt_range"] == (3, 6)
    assert spec.options["namespace"] is None


def test_pod_resources_set_threads_memory_and_thread_env():
    spec = _spec(resources={"requests": {"cpu": "2", "memory": "6Gi"},
                            "limits": {"cpu": "2500m", "memory": "8Gi"}})
    assert (spec.settings.threads_per_worker, spec.settings.memory_limit) == (2, 8 * 2**30)
    worker = _worker(spec.options["custom_cluster_spec"])
    args = worker["args"]
    assert args[args.index("--nthreads") + 1] == "2"
    assert args[args.index("--memory-limit") + 1] == str(8 * 2**30)
    env = _env(worker)
    assert env["OMP_NUM_THREADS"] == env["OPENCV_FOR_THREADS_NUM"] == "2"
    assert env["DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE"] == "False"
    assert spec.options["custom_cluster_spec"]["spec"]["worker"]["replicas"] == 3


def test_config_defaults_size_the_pods():
    with config_set(**{"kubernetes.worker-cpu": "3", "kubernetes.worker-memory": "5G",
                       "kubernetes.image": IMAGE}):
        spec = kubernetes_spec(resolve_settings(2))
    assert (spec.settings.threads_per_worker, spec.settings.memory_limit) == (3, 5 * 10**9)
    assert _worker(spec.options["custom_cluster_spec"])["resources"]["limits"] == {
        "cpu": "3", "memory": "5G"}


def config_set(**values):
    import dask.config

    return dask.config.set({f"caiman-dask.{k}": v for k, v in values.items()})


@pytest.mark.parametrize(("text", "value"), [("500m", 0.5), ("2", 2.0), ("4Gi", 4 * 2**30),
                                             ("1e9", 1e9), ("128974848", 128974848.0),
                                             ("1.5k", 1500.0)])
def test_parse_quantity(text, value):
    assert parse_quantity(text, what="x") == pytest.approx(value)


@pytest.mark.parametrize(("options", "message"), [
    ({"image": None}, "needs image"),
    ({"image": "registry.example.com/caiman-dask"}, "not pinned"),
    ({"image": "registry.example.com:5000/caiman-dask:latest"}, "not pinned"),
    ({"resources": {"limits": {"memory": "4Gi"}}}, "no cpu"),
    ({"resources": {"limits": {"cpu": "2", "memory": "4 GB"}}}, "memory='4 GB'"),
    ({"resources": {"limit": {"cpu": "2"}}}, "'requests' and/or 'limits'"),
    ({"resources": {"limits": "2"}}, "'requests' and/or 'limits'"),
    ({"resources": {"limits": {"cpu": "2", "memory": "512m"}}}, "below 1 MiB"),
    ({"env": {"OMP_NUM_THREADS": "8"}}, "OMP_NUM_THREADS"),
    ({"adapt": 2}, "adapt=2 is below n_processes=3"),
])
def test_bad_options_fail_saying_what_to_change(options, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        _spec(**options)


def test_pinned_digest_and_registry_port_are_accepted():
    _spec(image="registry.example.com:5000/caiman-dask:0.1.0")
    _spec(image="registry.example.com/caiman-dask@sha256:" + "a" * 64)


def test_setup_cluster_without_kubernetes_credentials_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="set KUBECONFIG"):
        setup_cluster("kubernetes", 2, image=IMAGE)


# -- the pod environment, run for real ----------------------------------------------------

def test_a_dask_worker_with_the_pods_args_and_env_gets_our_settings(tmp_path):
    """Start ``dask worker`` as the operator would, with the manifest's args and env."""
    spec = _spec(resources={"limits": {"cpu": "2", "memory": "3Gi"}})
    worker = _worker(spec.options["custom_cluster_spec"])
    args = [a.replace("$(DASK_WORKER_NAME)", "pod-0") for a in worker["args"]]
    args[args.index("--dashboard-address") + 1] = "127.0.0.1:0"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "OMP_"))}
    env.update(_env(worker), PYTHONPATH=os.pathsep.join([str(DEPLOY.parents[1]),
                                                         str(DEPLOY.parents[1] / "tests")]))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        env["DASK_SCHEDULER_ADDRESS"] = cluster.scheduler_address
        command = [sys.executable, "-m", "distributed.cli.dask_worker", *args[2:],
                   "--local-directory", str(tmp_path)]
        proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=30)
            info = next(iter(client.scheduler_info(n_workers=-1)["workers"].values()))
            seen = next(iter(client.run(k8s_check.worker_view).values()))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert (info["name"], info["nthreads"], info["memory_limit"]) == ("pod-0", 2, 3 * 2**30)
    assert seen["env"] == {"OMP_NUM_THREADS": "2", "OPENCV_FOR_THREADS_NUM": "2",
                           "MALLOC_TRIM_THRESHOLD_": None}
    assert (seen["pause"], seen["terminate"]) == (False, 0.95)
