"""Motion-correction maths: known shifts recovered, parameters checked, edge cases defined."""

from __future__ import annotations

import json

import motion_synth as ms
import numpy as np
import pytest
import scipy.fft
import tifffile

from caiman_dask.errors import ConfigError, ParameterError
from caiman_dask.motion import (
    FLAG_AT_BOUND,
    FLAG_FLAT,
    FLAG_NONFINITE,
    BlockShifts,
    MotionParams,
    apply_block_shifts,
    compare_metrics,
    correct_block,
    crispness,
    frame_correlations,
    initial_template,
    meta_template,
    rigid_template,
    template_indices,
)
from caiman_dask.motion.piecewise import tile_layout
from caiman_dask.motion.spectra import RealFFT

PAD = 16


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A padded 256x256 synthetic field of view (neurons + background)."""
    return ms.neuron_image((256, 256), pad=PAD)


@pytest.fixture(scope="module")
def big_scene() -> np.ndarray:
    """A padded 512x512 synthetic field of view, for pw-rigid tiles."""
    return ms.neuron_image((512, 512), pad=PAD, n_neurons=600, seed=4)


@pytest.fixture(scope="module")
def shifted(scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """40 noisy frames moved by known sub-pixel displacements within +-8 px."""
    displacements = np.random.default_rng(3).uniform(-8, 8, (40, 2))
    return ms.rigid_movie(scene, displacements, pad=PAD, noise=20.0), displacements


@pytest.fixture(scope="module")
def neurofinder(neurofinder_tif) -> np.ndarray:
    """The first 200 frames of the real neurofinder crop, float32."""
    return tifffile.imread(neurofinder_tif, key=range(200)).astype(np.float32)


# -- registration accuracy ---------------------------------------------------------------
def test_sign_convention_integer_shift(scene: np.ndarray) -> None:
    template = ms.crop(scene, PAD)
    frame = ms.rigid_movie(scene, np.array([[3.0, -2.0]]), pad=PAD)
    result = correct_block(frame, template, MotionParams(nonneg_movie=False, border_nan=True))
    # content moved down 3 / left 2: the shift to apply moves it back up 3 / right 2
    np.testing.assert_allclose(result.rigid_shifts[0], [-3.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(result.corrected[0, 3:-3, 3:-3], template[3:-3, 3:-3],
                               rtol=1e-4, atol=1e-2)
    assert np.isnan(result.corrected[0, -3:]).all() and np.isnan(result.corrected[0, :, :2]).all()


def test_rigid_subpixel_shifts_recovered(scene: np.ndarray, shifted) -> None:
    frames, displacements = shifted
    result = correct_block(frames, ms.crop(scene, PAD), MotionParams(max_shifts=(10, 10)))
    assert rms(result.rigid_shifts + displacements) <= 0.1
    assert np.abs(result.rigid_shifts + displacements).max() <= 0.2
    assert not result.flags.any()
    assert result.corrected.dtype == np.float32 and result.pw_shifts is None


def test_large_shifts_and_odd_frame_sizes() -> None:
    pad = 40
    scene = ms.neuron_image((251, 243), pad=pad, seed=2)
    displacements = np.random.default_rng(4).uniform(-30, 30, (6, 2))
    frames = ms.rigid_movie(scene, displacements, pad=pad, noise=10.0)
    template = ms.crop(scene, pad)
    wide = correct_block(frames, template, MotionParams(max_shifts=(35, 35)))  # FFT search
    assert rms(wide.rigid_shifts + displacements) <= 0.1
    small = displacements / 6
    frames = ms.rigid_movie(scene, small, pad=pad, noise=10.0)
    for options in ({}, {"pw_rigid": True, "strides": (60, 52), "overlaps": (25, 31)}):
        result = correct_block(frames, template, MotionParams(**options))
        assert rms(result.rigid_shifts + small) <= 0.1
        if result.pw_shifts is not None:
            assert rms(result.pw_shifts + small[:, None, None, :]) <= 0.1


def test_piecewise_smooth_fields_recovered(big_scene: np.ndarray) -> None:
    template = ms.crop(big_scene, PAD)
    params = MotionParams(pw_rigid=True)
    fields = [ms.smooth_field(big_scene.shape, amplitude=2.0, period=1200, phase=p,
                              origin=-PAD) for p in np.linspace(0, 5, 5)]
    frames = np.stack([ms.crop(ms.deform(big_scene, f), PAD) for f in fields])
    result = correct_block(frames, template, params)
    centres_y, centres_x = tile_layout((512, 512), strides=(96, 96), overlaps=(32, 32)).centres
    truth = np.stack([ms.field_at(tuple(ms.crop(a, PAD) for a in f), centres_y, centres_x)
                      for f in fields])
    assert result.pw_shifts.shape == (5, 5, 5, 2)
    assert rms(result.pw_shifts - truth) <= 0.3
    inner = (slice(None), slice(16, -16), slice(16, -16))
    residual = result.corrected[inner] - result.offset - template[16:-16, 16:-16]
    raw_residual = frames[inner] - template[16:-16, 16:-16]
    assert rms(residual) < 0.35 * rms(raw_residual)


def test_piecewise_on_rigid_motion_is_uniform(scene: np.ndarray, shifted) -> None:
    frames, displacements = shifted
    params = MotionParams(pw_rigid=True, strides=(64, 64), overlaps=(32, 32),
                          max_shifts=(10, 10))
    result = correct_block(frames[:10], ms.crop(scene, PAD), params)
    assert rms(result.pw_shifts + displacements[:10, None, None, :]) <= 0.15


def test_neurofinder_unshifted_has_no_motion(neurofinder: np.ndarray) -> None:
    found = correct_block(neurofinder, neurofinder.mean(axis=0), MotionParams()).rigid_shifts
    assert rms(found) < 0.2
    # what is left is the movie's own jitter: templates from either half agree on it
    first = correct_block(neurofinder, neurofinder[:100].mean(axis=0), MotionParams())
    second = correct_block(neurofinder, neurofinder[100:].mean(axis=0), MotionParams())
    jitter = [r.rigid_shifts - r.rigid_shifts.mean(axis=0) for r in (first, second)]
    assert rms(jitter[0] - jitter[1]) <= 0.15 < rms(jitter[0]) * np.sqrt(2)


def test_neurofinder_known_shifts(neurofinder: np.ndarray) -> None:
    displacements = np.random.default_rng(5).uniform(-5, 5, (len(neurofinder), 2))
    moved = np.stack([ms.crop(ms.translate(f, d), PAD)
                      for f, d in zip(neurofinder, displacements, strict=True)])
    still = ms.crop(neurofinder, PAD)
    template = ms.crop(neurofinder.mean(axis=0), PAD)
    found = correct_block(moved, template, MotionParams()).rigid_shifts
    own = correct_block(still, template, MotionParams()).rigid_shifts  # the movie's jitter
    assert rms(found + displacements) <= 0.2
    assert rms(found - (own - displacements)) <= 0.1


# -- application ------------------------------------------------------------------------
@pytest.mark.parametrize("pw_rigid", [False, True])
def test_fourier_and_opencv_agree(scene: np.ndarray, shifted, pw_rigid: bool) -> None:
    frames = ms.rigid_movie(scene, shifted[1][:6], pad=PAD)  # noise-free
    params = MotionParams(pw_rigid=pw_rigid, strides=(64, 64), overlaps=(32, 32),
                          max_shifts=(10, 10), nonneg_movie=False)
    template = ms.crop(scene, PAD)
    cubic = correct_block(frames[:6], template, params)
    fourier = correct_block(frames[:6], template, params.replace(shifts_opencv=False))
    np.testing.assert_array_equal(cubic.rigid_shifts, fourier.rigid_shifts)
    inner = (slice(None), slice(12, -12), slice(12, -12))
    assert rms(cubic.corrected[inner] - fourier.corrected[inner]) < 0.05 * template.std()
    assert rms(fourier.corrected[inner] - template[12:-12, 12:-12]) < 0.1 * template.std()


@pytest.mark.parametrize("options", [
    {}, {"pw_rigid": True}, {"shifts_opencv": False}, {"pw_rigid": True, "shifts_opencv": False},
    {"border_nan": "copy"}, {"gSig_filt": (3, 3)}])
def test_correct_twice_and_apply_give_same_frames(scene: np.ndarray, shifted, options) -> None:
    frames, _ = shifted
    frames = frames[:5].copy()
    frames[2, 40:44, 50:60] = np.nan
    params = MotionParams(strides=(64, 64), overlaps=(32, 32), max_shifts=(10, 10), **options)
    template = ms.crop(scene, PAD)
    first = correct_block(frames, template, params)
    second = correct_block(frames, template, params)
    np.testing.assert_array_equal(first.corrected, second.corrected)
    again = apply_block_shifts(frames, first, params)
    np.testing.assert_array_equal(again, first.corrected)
    assert first.flags[2] & FLAG_NONFINITE


def test_apply_shifts_to_another_channel(scene: np.ndarray, shifted) -> None:
    frames, _ = shifted
    params = MotionParams(max_shifts=(10, 10), nonneg_movie=False)
    result = correct_block(frames[:4], ms.crop(scene, PAD), params)
    other = apply_block_shifts(2 * frames[:4] + 5, result.shifts, params)
    np.testing.assert_allclose(other, 2 * result.corrected + 5, rtol=1e-4, atol=1e-2)
    with pytest.raises(ParameterError, match="do not match"):
        apply_block_shifts(frames[:3], result.shifts, params)


# -- borders, offsets, odd frames ---------------------------------------------------------
@pytest.mark.parametrize("mode", [True, False, "copy", "min"])
def test_border_modes(scene: np.ndarray, mode) -> None:
    frame = ms.rigid_movie(scene, np.array([[2.5, -3.2]]), pad=PAD)
    result = correct_block(frame, ms.crop(scene, PAD),
                           MotionParams(border_nan=mode, nonneg_movie=False))
    out = result.corrected[0]
    np.testing.assert_allclose(result.rigid_shifts[0], [-2.5, 3.2], atol=0.051)
    # the source of the last ceil(2.5) rows and first ceil(3.2) columns is outside the frame
    bottom, left = out[-3:], out[:, :4]
    if mode is True:
        assert np.isnan(bottom).all() and np.isnan(left).all()
        assert np.isfinite(out[:-3, 4:]).all()
    elif mode is False:
        assert (bottom == 0).all() and (left == 0).all()
    elif mode == "min":
        assert (bottom == frame.min()).all() and (left == frame.min()).all()
    else:
        np.testing.assert_array_equal(bottom, np.broadcast_to(out[-4], bottom.shape))
        np.testing.assert_array_equal(left[:-3], np.broadcast_to(out[:-3, 4:5], (253, 4)))
        assert np.isfinite(out).all()


def test_nonneg_offset(scene: np.ndarray, shifted) -> None:
    frames, _ = shifted
    template = ms.crop(scene, PAD)
    given = correct_block(frames[:3], template, MotionParams(min_mov=-50.0, max_shifts=(10, 10)))
    plain = correct_block(frames[:3], template,
                          MotionParams(nonneg_movie=False, max_shifts=(10, 10)))
    assert given.offset == 50.0
    np.testing.assert_allclose(given.corrected, plain.corrected + 50.0, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(given.mean_image, plain.mean_image, rtol=1e-6, atol=1e-3)
    fallback = correct_block(frames[:3], template, MotionParams(max_shifts=(10, 10)))
    assert fallback.offset == pytest.approx(-float(template.min()))


def test_constant_and_nan_frames(scene: np.ndarray, shifted) -> None:
    frames, displacements = shifted
    block = frames[:4].copy()
    block[0] = 123.0
    block[1, 100:110, 100:130] = np.nan
    block[2] = np.nan
    result = correct_block(block, ms.crop(scene, PAD), MotionParams(max_shifts=(10, 10)))
    assert result.flags[0] == FLAG_FLAT and (result.rigid_shifts[0] == 0).all()
    assert np.allclose(result.corrected[0] - result.offset, 123.0)
    assert result.flags[1] == FLAG_NONFINITE
    assert np.abs(result.rigid_shifts[1] + displacements[1]).max() <= 0.2
    moved = np.isnan(result.corrected[1, 20:-20, 20:-20]).sum()
    assert 200 <= moved <= 400  # the 300 NaN pixels, moved (plus their border strips)
    assert result.flags[2] == FLAG_FLAT | FLAG_NONFINITE and np.isnan(result.corrected[2]).all()
    assert result.flags[3] == 0 and np.isfinite(result.mean_image).sum() > 0


def test_shift_beyond_bound_is_flagged(scene: np.ndarray) -> None:
    frame = ms.rigid_movie(scene, np.array([[7.0, 0.0]]), pad=PAD)
    result = correct_block(frame, ms.crop(scene, PAD), MotionParams(max_shifts=(4, 4)))
    assert result.flags[0] & FLAG_AT_BOUND and abs(result.rigid_shifts[0, 0]) <= 4.0


def test_highpass_registration_on_one_photon_like_data(scene: np.ndarray) -> None:
    displacements = np.random.default_rng(7).uniform(-5, 5, (8, 2))
    rows = np.linspace(0, 1, scene.shape[0])[:, None]
    frames = []
    for k, d in enumerate(displacements):  # a strong background that changes every frame
        haze = 3000 * (1 + 0.5 * np.sin(3 * rows + k)) * np.ones_like(scene)
        frames.append(ms.crop(ms.translate(scene, d) + haze.astype(np.float32), PAD))
    params = MotionParams(gSig_filt=(3, 3), nonneg_movie=False)
    result = correct_block(np.stack(frames), ms.crop(scene, PAD), params)
    assert rms(result.rigid_shifts + displacements) <= 0.15
    assert result.corrected[0, 20:-20, 20:-20].mean() > 3000  # raw data shifted, not filtered


# -- parameters --------------------------------------------------------------------------
def test_params_defaults_and_caiman_dict() -> None:
    params = MotionParams()
    assert (params.max_shifts, params.strides, params.overlaps) == ((6, 6), (96, 96), (32, 32))
    assert (params.max_deviation_rigid, params.upsample_factor_grid, params.niter_rig,
            params.num_frames_split) == (3, 4, 1, 80)
    assert (params.pw_rigid, params.shifts_opencv, params.border_nan, params.gSig_filt,
            params.nonneg_movie) == (False, True, "copy", None, True)  # CNMFParams' default
    caiman = {"max_shifts": [10, 12], "strides": [48, 48], "overlaps": [24, 24],
              "pw_rigid": True, "gSig_filt": [3, 3], "splits_rig": 14, "use_cuda": False,
              "indices": [[None, None, None], [None, None, None]], "min_mov": None}
    parsed = MotionParams.from_dict(caiman)
    assert parsed.max_shifts == (10, 12) and parsed.gSig_filt == (3, 3)
    assert parsed.validate((128, 128)) is parsed
    assert MotionParams.from_dict(json.loads(json.dumps(parsed.to_dict()))) == parsed
    assert hash(parsed) == hash(MotionParams.from_dict(parsed.to_dict()))
    numpy_values = MotionParams(max_shifts=np.array([4, 5]), niter_rig=np.int64(2),
                                pw_rigid=np.bool_(True), min_mov=np.float32(-3))
    assert numpy_values.max_shifts == (4, 5) and type(numpy_values.niter_rig) is int


def test_unknown_key_suggests_name() -> None:
    with pytest.raises(ConfigError, match="max_shift.*Did you mean 'max_shifts'"):
        MotionParams.from_dict({"max_shift": (6, 6)})


@pytest.mark.parametrize(("changes", "shape", "name"), [
    ({"max_shifts": (64, 6)}, (128, 128), "max_shifts"),
    ({"pw_rigid": True, "strides": (96, 96), "overlaps": (48, 48)}, (128, 128),
     "motion.strides"),
    ({"pw_rigid": True, "strides": (8, 8), "overlaps": (8, 8)}, (128, 128),
     "max_deviation_rigid"),
    ({"is3D": True}, (64, 64), "is3D"),
    ({"indices": (slice(0, 10), slice(None))}, (64, 64), "indices"),
])
def test_validate_refuses_inconsistent_values(changes, shape, name) -> None:
    with pytest.raises(ParameterError, match=name):
        MotionParams(**changes).validate(shape)


@pytest.mark.parametrize(("changes", "name"), [
    ({"num_frames_split": 0}, "num_frames_split"), ({"max_shifts": (-1, 6)}, "max_shifts"),
    ({"overlaps": (-2, 4)}, "overlaps"), ({"max_deviation_rigid": -1}, "max_deviation_rigid"),
    ({"border_nan": "zero"}, "border_nan"), ({"gSig_filt": (0, 3)}, "gSig_filt"),
    ({"strides": (0, 4)}, "strides"), ({"niter_rig": 1.5}, "niter_rig"),
    ({"min_mov": float("nan")}, "min_mov"), ({"pw_rigid": "yes"}, "pw_rigid"),
])
def test_construction_refuses_bad_values(changes, name) -> None:
    with pytest.raises(ParameterError, match=name):
        MotionParams(**changes)


def test_bad_arrays_are_parameter_errors(scene: np.ndarray) -> None:
    template = ms.crop(scene, PAD)
    with pytest.raises(ParameterError, match=r"\(n, Y, X\)"):
        correct_block(template, template, MotionParams())
    with pytest.raises(ParameterError, match="template shape"):
        correct_block(template[None], template[:100], MotionParams())
    with pytest.raises(ParameterError, match="no finite pixel"):
        correct_block(template[None], np.full_like(template, np.nan), MotionParams())
    with pytest.raises(ParameterError, match="real numbers"):
        correct_block(template[None].astype(np.complex64), template, MotionParams())


# -- templates and metrics ---------------------------------------------------------------
def test_templates(scene: np.ndarray, shifted) -> None:
    frames, _ = shifted
    assert list(template_indices(1000, n_samples=5)) == [0, 250, 500, 749, 999]
    assert list(template_indices(3)) == [0, 1, 2]
    params = MotionParams(max_shifts=(10, 10))
    start = initial_template(frames)
    refined = rigid_template(frames, params)
    assert crispness(refined, crop=10) > 1.5 * crispness(start, crop=10)
    assert np.isfinite(refined).all()
    np.testing.assert_array_equal(rigid_template(frames, params.replace(niter_rig=0)), start)
    blocks = np.stack([refined, refined + 2, refined + 4])
    blocks[0, :5] = np.nan
    np.testing.assert_allclose(meta_template(blocks)[5:], refined[5:] + 2, rtol=1e-6)
    np.testing.assert_allclose(meta_template(blocks)[:5], refined[:5] + 3, rtol=1e-6)


def test_metrics_improve_after_correction(scene: np.ndarray, shifted) -> None:
    frames, _ = shifted
    result = correct_block(frames, ms.crop(scene, PAD), MotionParams(max_shifts=(10, 10)))
    change = compare_metrics(frames, result.corrected, crop=10)
    assert change.crispness_ratio > 1.5 and change.correlation_gain > 0.1
    image = np.arange(20.0).reshape(4, 5) ** 2
    gy, gx = np.gradient(image)
    assert crispness(image) == pytest.approx(np.sqrt((gy ** 2 + gx ** 2).sum()))
    noisy = frames[:3].copy()
    noisy[0, :4] = np.nan
    r = frame_correlations(noisy, frames[0])
    assert r[0] == pytest.approx(1.0) and np.isfinite(r).all()


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (9, 8), (33, 31), (64, 50)])
def test_real_fft_matches_scipy(shape) -> None:
    images = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    spectra = RealFFT(shape, batch=3)(images)
    np.testing.assert_allclose(spectra, scipy.fft.rfft2(images), rtol=1e-5, atol=1e-4)


def test_block_shifts_dataclass_roundtrip(scene: np.ndarray, shifted) -> None:
    frames, _ = shifted
    params = MotionParams(pw_rigid=True, strides=(64, 64), overlaps=(32, 32),
                          max_shifts=(10, 10))
    result = correct_block(frames[:2], ms.crop(scene, PAD), params)
    shifts = BlockShifts(result.rigid_shifts.copy(), result.pw_shifts.copy(), result.offset)
    np.testing.assert_array_equal(apply_block_shifts(frames[:2], shifts, params),
                                  result.corrected)
