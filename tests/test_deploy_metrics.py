"""deploy/: the Grafana dashboard and the Prometheus alert rules name only series Conveyor exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import core.metrics  # noqa: F401 - registers Conveyor's metrics

ROOT = Path(__file__).resolve().parent.parent
SERIES = re.compile(r"\bconveyor_[a-z_]+")


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> set[str]:
    """Every sample name Conveyor's metrics expose: a counter's _total, a histogram's _bucket, _count and _sum."""
    families = [family for family in REGISTRY.collect() if family.name.startswith("conveyor_")]
    return {f"{family.name}{suffix}" for family in families for suffix in SUFFIXES[family.type]}


def expressions() -> dict[str, list[str]]:
    dashboard = json.loads((ROOT / "deploy/grafana/conveyor.json").read_text())
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return {
        "dashboard": [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]],
        "alerts": [rule["expr"] for group in rules["groups"] for rule in group["rules"]],
    }


def test_every_series_the_dashboard_and_alerts_name_is_exported() -> None:
    names = exported()
    for source, exprs in expressions().items():
        assert exprs, source
        for expr in exprs:
            missing = set(SERIES.findall(expr)) - names
            assert not missing, f"{source}: {expr} names {missing}, which Conveyor does not export"


def test_the_alerts_cover_what_the_issue_names() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    named = ["conveyor_queue_oldest_age_seconds", "conveyor_jobs_failed_total"]
    named += ["conveyor_worker_heartbeat_timestamp_seconds", "conveyor_maintenance_tick_timestamp_seconds"]
    assert [series for series in named if series not in exprs] == []
