"""Filters folded into load_collection: the same graph, a smaller load."""

from __future__ import annotations

from twinmesh.openeo.graphs import push_down_filters


def _graph() -> dict:
    return {
        "process_graph": {
            "load": {"process_id": "load_collection", "arguments": {"id": "c"}},
            "bbox": {
                "process_id": "filter_bbox",
                "arguments": {
                    "data": {"from_node": "load"},
                    "extent": {"west": 1, "south": 2, "east": 3, "north": 4},
                },
            },
            "time": {
                "process_id": "filter_temporal",
                "arguments": {
                    "data": {"from_node": "bbox"},
                    "extent": ["2020-01-01", "2020-02-01"],
                },
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "time"}, "format": "netCDF"},
                "result": True,
            },
        }
    }


def test_filters_after_a_load_become_its_arguments() -> None:
    pushed = push_down_filters(_graph())["process_graph"]
    assert set(pushed) == {"time", "save"}
    assert pushed["time"]["process_id"] == "load_collection"
    assert pushed["time"]["arguments"] == {
        "id": "c",
        "spatial_extent": {"west": 1, "south": 2, "east": 3, "north": 4},
        "temporal_extent": ["2020-01-01", "2020-02-01"],
    }


def test_a_load_read_twice_or_already_limited_is_left_alone() -> None:
    graph = _graph()
    graph["process_graph"]["other"] = {
        "process_id": "reduce_dimension",
        "arguments": {"data": {"from_node": "load"}, "dimension": "t", "reducer": {}},
    }
    assert push_down_filters(graph)["process_graph"]["bbox"]["process_id"] == "filter_bbox"
    limited = _graph()
    limited["process_graph"]["load"]["arguments"]["spatial_extent"] = {"west": 0}
    pushed = push_down_filters(limited)["process_graph"]
    assert pushed["bbox"]["process_id"] == "filter_bbox"
    parameter = _graph()
    parameter["process_graph"]["time"]["arguments"]["extent"] = {"from_parameter": "t"}
    assert push_down_filters(parameter)["process_graph"]["time"]["process_id"] == "filter_temporal"
