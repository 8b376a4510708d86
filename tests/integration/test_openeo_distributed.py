"""The same process graph on a dask.distributed LocalCluster (the scale path, worker
processes reading the Zarr store themselves) and on threads gives the same result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import LocalCluster

from tests.helpers.openeo_server import build_small_twin
from twinmesh.core.engine import Engine
from twinmesh.core.settings import Settings
from twinmesh.openeo.graphs import GraphContext, run_graph

GRAPH = {
    "process_graph": {
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": "mini-grid", "bands": ["red", "nir", "temperature"]},
        },
        "bbox": {
            "process_id": "filter_bbox",
            "arguments": {
                "data": {"from_node": "load"},
                "extent": {"west": 9.1, "south": 50.1, "east": 9.6, "north": 50.5},
            },
        },
        "scaled": {
            "process_id": "apply",
            "arguments": {
                "data": {"from_node": "bbox"},
                "process": {
                    "process_graph": {
                        "m": {
                            "process_id": "multiply",
                            "arguments": {"x": {"from_parameter": "x"}, "y": 3},
                            "result": True,
                        }
                    }
                },
            },
        },
        "monthly": {
            "process_id": "aggregate_temporal_period",
            "arguments": {
                "data": {"from_node": "scaled"},
                "period": "month",
                "reducer": {
                    "process_graph": {
                        "s": {
                            "process_id": "sd",
                            "arguments": {"data": {"from_parameter": "data"}},
                            "result": True,
                        }
                    }
                },
            },
        },
        "save": {
            "process_id": "save_result",
            "arguments": {"data": {"from_node": "monthly"}, "format": "netCDF"},
            "result": True,
        },
    }
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        memory_limit="1GiB",
    ) as local:  # fmt: skip
        yield local


def test_a_local_cluster_and_threads_give_equal_results(
    tmp_path: Path, cluster: LocalCluster
) -> None:
    engine = Engine(Settings(data_dir=tmp_path))
    build_small_twin(engine.store)
    on_threads = run_graph(GRAPH, GraphContext(engine, 10**9)).data
    before = cluster.scheduler.transition_counter
    on_cluster = run_graph(
        GRAPH, GraphContext(engine, 10**9), scheduler_address=cluster.scheduler_address
    ).data
    assert cluster.scheduler.transition_counter > before  # computed by the cluster
    assert on_threads.sizes == on_cluster.sizes == {"bands": 3, "t": 3, "y": 8, "x": 10}
    np.testing.assert_array_equal(on_threads.values, on_cluster.values)
    assert np.isfinite(on_threads.values).mean() > 0.99
