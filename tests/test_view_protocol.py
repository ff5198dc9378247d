"""One protocol suite, the same assertions for the Dask dview, a real Pool and serial runs."""

from __future__ import annotations

import gc
import multiprocessing
import time
import weakref

import pytest
import view_tasks as vt

from caiman_dask.view import SerialView


@pytest.fixture(scope="module")
def spawn_pool():
    pool = multiprocessing.get_context("spawn").Pool(2)
    yield pool
    pool.terminate()
    pool.join()


@pytest.fixture(scope="module")
def serial_view():
    view = SerialView()
    yield view
    view.shutdown()


@pytest.fixture(params=["dask", "pool", "serial"])
def view(request, dask_cluster, spawn_pool, serial_view):
    return {"dask": dask_cluster[1], "pool": spawn_pool, "serial": serial_view}[request.param]


def test_map_async_returns_results_in_input_order(view):
    assert view.map_async(vt.square, range(23)).get(60) == [x * x for x in range(23)]


@pytest.mark.parametrize("chunksize", [1, 3, 50])
def test_map_honours_chunksize_and_order(view, chunksize):
    assert view.map(vt.square, range(17), chunksize) == [x * x for x in range(17)]


def test_empty_input_gives_empty_list(view):
    assert view.map_async(vt.square, []).get(30) == []


def test_starmap_and_apply(view):
    assert view.starmap(vt.add, [(1, 2), (3, 4)]) == [3, 7]
    assert view.apply_async(vt.add, (1, 2), {"c": 10}).get(30) == 13


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_results_taken_from_an_iterator_are_not_kept_by_the_view(view, method):
    taken = []
    for i, result in enumerate(getattr(view, method)(vt.ones, [100_000] * 6)):
        taken.append(weakref.ref(result))
        del result
        if i == 4:
            gc.collect()
            assert [ref() is None for ref in taken[:4]] == [True] * 4  # only the newest lives


def test_imap_in_order_with_chunksize(view):
    assert list(view.imap(vt.square, range(9), 2)) == [x * x for x in range(9)]


def test_imap_unordered_gives_every_result(view):
    assert sorted(view.imap_unordered(vt.square, range(9))) == [x * x for x in range(9)]


def test_task_exception_reraises_in_caller(view):
    with pytest.raises(ValueError, match="item 3 is bad"):
        view.map_async(vt.fail_on_three, range(6), 1).get(60)


def test_get_honours_timeout(view):
    result = view.map_async(vt.sleep_then, [1.5])
    start = time.monotonic()
    with pytest.raises(multiprocessing.TimeoutError):
        result.get(timeout=0.2)
    assert time.monotonic() - start < 1.0
    assert not result.ready()
    assert result.get(30) == [1.5]
    assert result.successful()


def test_imap_next_honours_timeout(view):
    iterator = view.imap(vt.sleep_then, [1.0])
    with pytest.raises(multiprocessing.TimeoutError):
        iterator.next(timeout=0.2)
    assert iterator.next(timeout=30) == 1.0
    with pytest.raises(StopIteration):
        next(iterator)
