"""Run parameters and the run folder's bookkeeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from caiman_dask.errors import ConfigError, StoreExistsError
from caiman_dask.pipeline.params import RunParams, resolve_params
from caiman_dask.pipeline.run import _check_folder
from caiman_dask.pipeline.state import RunFolder, stage_key

CAIMAN_JSON = {  # the shape of CaImAn's demo parameter files
    "data": {"fr": 7, "decay_time": 1.5, "dxy": [0.87, 0.87]},
    "motion": {"max_shifts": [6, 6], "strides": [48, 48], "overlaps": [24, 24],
               "pw_rigid": True, "niter_rig": 1},
    "patch": {"rf": 25, "stride": 10, "only_init": True},
    "init": {"K": 4, "gSig": [4, 4], "method_init": "greedy_roi", "nb": 2},
    "temporal": {"p": 1, "method_deconvolution": "oasis"},
    "merging": {"merge_thr": 0.85},
    "quality": {"min_SNR": 2.0, "rval_thr": 0.85, "use_cnn": False},
}


def test_caiman_json_file_is_read_with_every_group(tmp_path):
    path = tmp_path / "params_demo.json"
    path.write_text(json.dumps(CAIMAN_JSON))
    params = resolve_params(path)
    assert params.motion.pw_rigid and params.motion.max_shifts == (6, 6)
    assert params.group("init")["K"] == 4 and params.group("data")["fr"] == 7
    assert RunParams.from_dict(params.to_dict()) == params  # the saved file reads back


def test_yaml_and_overrides_apply_last(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("init:\n  K: 3\nmotion:\n  max_shifts: [5, 5]\n")
    params = resolve_params(path, ["init.K=7", "motion.pw_rigid=true"])
    assert params.group("init")["K"] == 7 and params.motion.pw_rigid
    assert params.motion.max_shifts == (5, 5)


class _CaimanLikeParams:
    """Stands for CaImAn's CNMFParams: an object with to_dict() of groups."""

    def to_dict(self):
        return CAIMAN_JSON


def test_a_cnmfparams_object_is_accepted():
    assert resolve_params(_CaimanLikeParams()).group("patch")["rf"] == 25


@pytest.mark.parametrize(("source", "overrides", "match"), [
    ({"init": {"KK": 4}}, (), "(?i)did you mean 'K'"),
    ({"inti": {"K": 4}}, (), "(?i)did you mean 'init'"),
    ({"motion": {"max_shift": 4}}, (), "max_shifts"),
    (None, ["init.K"], "GROUP.KEY=VALUE"),
    (None, ["K=4"], "GROUP.KEY=VALUE"),
    ({"init": 4}, (), "must be a mapping"),
])
def test_unknown_or_malformed_parameters_are_clear_errors(source, overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve_params(source, overrides)


@pytest.mark.parametrize(("text", "name", "match"), [
    ("{not json", "bad.json", "not valid JSON"),
    ("init: [1, 2", "bad.yaml", "not valid YAML"),
    ("- 1\n- 2\n", "list.yaml", "mapping of parameter groups"),
])
def test_malformed_parameter_files_name_the_file(tmp_path, text, name, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        resolve_params(path)
    assert name in str(info.value)


def test_missing_parameter_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read parameters"):
        resolve_params(tmp_path / "nope.json")


def test_stage_keys_change_with_what_they_hash():
    assert stage_key(a=1, b=[1, 2]) == stage_key(b=[1, 2], a=1)
    assert stage_key(a=1) != stage_key(a=2)


def test_records_survive_and_are_forgotten(tmp_path):
    folder = RunFolder(tmp_path / "out")
    folder.root.mkdir()
    folder.record("motion", "k1", seconds=2)
    assert RunFolder(folder.root).done("motion", "k1")
    assert not folder.done("motion", "k2")
    folder.forget("motion")
    assert not folder.done("motion", "k1")


def test_a_live_run_holds_the_folder_and_a_dead_one_does_not(tmp_path):
    folder = RunFolder(tmp_path / "out")
    folder.lock()
    with pytest.raises(StoreExistsError, match="being written by another run"):
        RunFolder(folder.root).lock()
    folder.unlock()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (folder.root / ".lock").write_text(json.dumps({"pid": int(dead), "host": os.uname()[1]}))
    RunFolder(folder.root).lock()  # stale lock of a dead run: taken over
    folder.unlock()


def test_a_users_folder_is_never_taken_for_a_run(tmp_path):
    (tmp_path / "thesis.docx").write_text("precious")
    with pytest.raises(StoreExistsError, match="not from a caiman-dask run"):
        _check_folder(RunFolder(tmp_path))
    _check_folder(RunFolder(tmp_path / "new"))  # a new folder is fine


def test_frame_rate_is_the_users_only_when_given():
    default = resolve_params({"init": {"K": 3}})
    assert not default.fr_given and default.cnmf.data.fr == 30.0  # CaImAn's default, a fallback
    given = resolve_params({"data": {"fr": 7}})
    assert given.fr_given and given.cnmf.data.fr == 7.0
    assert resolve_params(None, ["data.fr=12.5"]).cnmf.data.fr == 12.5
    assert not resolve_params(default).fr_given  # a RunParams keeps what the user said
    from_movie = default.with_frame_rate(7.0)
    assert from_movie.fr_given and from_movie.cnmf.data.fr == 7.0
    assert from_movie.cnmf.init == default.cnmf.init and from_movie.motion == default.motion
