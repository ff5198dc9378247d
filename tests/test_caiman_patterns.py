"""CaImAn's own call patterns (caiman-facts.md), replayed against our dview without CaImAn."""

from __future__ import annotations

import view_tasks as vt


def caiman_map(f, args, dview):
    """The branch CaImAn repeats in ~25 places to run its tasks."""
    if "multiprocessing" in str(type(dview)):
        return dview.map_async(f, args).get(4294967)
    if dview is not None:
        results = dview.map_sync(f, args)
        dview.results.clear()
        return results
    return list(map(f, args))


def caiman_stop_server(dview):
    """CaImAn's stop_server for a Pool-like dview (called by CNMF.fit_file as well)."""
    if "multiprocessing" in str(type(dview)):
        dview.terminate()


def test_caiman_takes_the_pool_path_and_gets_a_list_in_order(dask_cluster):
    _, dview = dask_cluster
    args = [(i, i + 1) for i in range(30)]
    results = caiman_map(vt.square, list(range(30)), dview)
    assert isinstance(results, list) and results == [i * i for i in range(30)]
    results[3] = "assigned"  # map_reduce.py assigns into the returned list
    assert dview.starmap(vt.add, args) == [a + b for a, b in args]


def test_caiman_stop_server_leaves_the_users_cluster_usable(dask_cluster):
    client, dview = dask_cluster
    caiman_stop_server(dview)
    assert client.status == "running"
    assert caiman_map(vt.square, [1, 2], dview) == [1, 4]


def test_remaining_pool_calls_caiman_makes(dask_cluster):
    _, dview = dask_cluster
    assert dview.map(vt.square, range(5), chunksize=None) == [0, 1, 4, 9, 16]
    assert list(dview.imap(vt.square, range(5), 2)) == [0, 1, 4, 9, 16]
    assert dview.map_sync(vt.square, [3]) == [9]  # rois.py / labelling.py call it regardless
    assert len(dview) == 2  # pre_processing.py splits work by it
    dview.close()
    dview.join(timeout=5)
    assert dview.map(vt.square, [2]) == [4]


def test_serial_none_dview_path_matches(dask_cluster):
    _, dview = dask_cluster
    assert caiman_map(vt.square, range(7), None) == caiman_map(vt.square, range(7), dview)
