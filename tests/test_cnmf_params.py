"""CNMF parameters: CaImAn's nested dicts, did-you-mean errors, validation."""

from __future__ import annotations

import json

import pytest

from caiman_dask.cnmf import CNMFParams
from caiman_dask.errors import ConfigError, ParameterError

CAIMAN_STYLE = {
    "data": {"fr": 7.0, "decay_time": 0.8, "dxy": [1.5, 1.5]},
    "patch": {"rf": 25, "stride": 6, "border_pix": 0, "only_init": True},
    "init": {"K": 6, "gSig": [4, 4], "nb": 2, "method_init": "greedy_roi", "ssub": 1},
    "temporal": {"p": 1, "method_deconvolution": "oasis"},
    "merging": {"merge_thr": 0.85},
    "quality": {"min_SNR": 2.0, "rval_thr": 0.85, "use_cnn": False},
    "motion": {"max_shifts": [6, 6], "pw_rigid": False},
}


def test_from_dict_round_trip_is_json() -> None:
    params = CNMFParams.from_dict(CAIMAN_STYLE)
    assert params.patch.rf == 25 and params.init.gSig == (4, 4) and params.init.nb == 2
    assert params.init.window() == (9, 9)  # CaImAn's default gSiz = 2*gSig + 1
    assert params.spatial.nrgthr == 0.9999 and params.temporal.fudge_factor == 0.96
    text = json.dumps(params.to_dict())
    again = CNMFParams.from_dict(json.loads(text))
    assert again == params
    assert json.loads(text)["motion"]["max_shifts"] == [6, 6]


@pytest.mark.parametrize("bad,expect", [
    ({"init": {"gsig": [4, 4]}}, "Did you mean 'gSig'"),
    ({"temporal": {"pp": 2}}, "Did you mean 'p'"),
    ({"merge": {"merge_thr": 0.8}}, "Did you mean 'merging'"),
])
def test_unknown_keys_are_config_errors(bad: dict, expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        CNMFParams.from_dict(bad)


@pytest.mark.parametrize("change,name", [
    ({"patch": {"rf": 200}}, "patch.rf"),
    ({"patch": {"rf": 10, "stride": 20}}, "patch.stride"),
    ({"init": {"K": 0}}, "init.K"),
    ({"patch": {"rf": 5}, "init": {"gSig": (6, 6)}}, "init.gSig"),
    ({"temporal": {"p": 3}}, "temporal.p"),
    ({"quality": {"use_cnn": True}}, "quality.use_cnn"),
    ({"init": {"method_init": "corr_pnr"}}, "init.method_init"),
    ({"merging": {"merge_thr": 1.5}}, "merging.merge_thr"),
    ({"data": {"fr": 0}}, "data.fr"),
])
def test_validate_names_the_bad_parameter(change: dict, name: str) -> None:
    params = CNMFParams().replace(**change)
    with pytest.raises(ParameterError, match=name.replace(".", r"\.")):
        params.validate((256, 256))


def test_valid_params_pass_and_chain() -> None:
    params = CNMFParams.from_dict(CAIMAN_STYLE)
    assert params.validate((256, 256)) is params


def test_documented_neurofinder_params_load_and_validate() -> None:
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "params" / "neurofinder.json"
    params = CNMFParams.from_dict(json.loads(path.read_text()))
    assert params.validate((256, 256)) is params
    assert params.data.fr == 7.0 and params.patch.only_init is False
    assert params.to_dict()["init"]["gSig"] == [5, 5]
