"""``python -m benchmarks.reports --buffers``: what it reads of a plan and what it prints (no database)."""

from __future__ import annotations

from benchmarks.reports import _plan_buffers, _plan_nodes, _print_buffers

PLAN = {
    "Node Type": "Hash Join",
    "Actual Rows": 10,
    "Actual Loops": 1,
    "Shared Hit Blocks": 40,
    "Shared Read Blocks": 5,
    "Plans": [
        {
            "Node Type": "Index Only Scan",
            "Index Name": "reports_stay_left",
            "Actual Rows": 10,
            "Actual Loops": 1,
            "Shared Hit Blocks": 12,
            "Shared Read Blocks": 0,
        },
        {
            "Node Type": "Seq Scan",
            "Relation Name": "kommo_lead",
            "Parent Relationship": "Inner",
            "Actual Rows": 3,
            "Actual Loops": 2,
            "Shared Hit Blocks": 30,
            "Shared Read Blocks": 3,
        },
    ],
}


def test_a_plans_buffers_are_its_top_nodes_and_each_node_keeps_its_own() -> None:
    assert _plan_buffers(PLAN) == 45
    assert [(node["depth"], node["node"], node["rows"], node["buffers"]) for node in _plan_nodes(PLAN)] == [
        (0, "Hash Join", 10, 0),
        (1, "Index Only Scan reports_stay_left", 10, 12),
        (1, "Seq Scan kommo_lead", 6, 33),
    ]


def _page(buffers: int) -> dict[str, object]:
    return {
        "status": 200,
        "buffers": buffers,
        "queries": [{"buffers": buffers, "ms": 1.0, "sql": "", "nodes": []}],
    }


def test_a_page_whose_buffers_grow_more_than_twofold_is_said_missed(capsys) -> None:
    small = {"deals": 10, "years": 2.0, "pages": {"funnel": _page(100), "gates": _page(100)}}
    large = {"deals": 100, "years": 20.0, "pages": {"funnel": _page(150), "gates": _page(201)}}

    assert _print_buffers(small, large, detail=False) == 1

    printed = capsys.readouterr().out
    assert "funnel" in printed and "1.50" in printed
    assert "missed by gates" in printed
