"""Drift reports: self-contained HTML a person can read, JSON a machine can, and untrusted
strings from captured data always escaped."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import numpy as np
import pytest

from sklambda.lifecycle import demo
from sklambda.monitoring.drift import DriftAggregate, baseline_profile, evaluate
from sklambda.monitoring.report import render_html, render_json
from sklambda.registry.features import FeatureSchema, FeatureSpec

EVIL = "<script>alert(1)</script>"
CONTEXT = {
    "model": "churn",
    "version": "7",
    "window_start": datetime(2026, 5, 1, tzinfo=UTC),
    "window_end": "2026-05-02T00:00:00Z",
    "run_id": "run-42",
}


@pytest.fixture(scope="module")
def demo_report():
    reference, _ = demo.generate(20_000, seed=0)
    baseline = baseline_profile(demo.to_matrix(reference), demo.DEMO_SCHEMA)
    current, _ = demo.generate(10_000, seed=1, drift=0.6)
    aggregate = DriftAggregate(baseline).add_columns(current)
    result = evaluate(baseline, aggregate)
    return baseline, aggregate, result


class _Collector(HTMLParser):
    """Collects tags, attributes and whether every non-void element is closed."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "line", "rect", "polygon", "polyline", "path", "circle"}

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.stack: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        self.ids += [v for k, v in attrs if k == "id" and v]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    assert collector.stack == [], f"unclosed: {collector.stack}"
    return collector


def test_html_is_self_contained_and_well_formed(demo_report):
    baseline, aggregate, result = demo_report
    page = render_html(result, baseline, aggregate, **CONTEXT)
    parsed = parse(page)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    for name, value in parsed.attrs:
        if name in {"src", "href", "xlink:href", "action"}:
            assert value is not None and value.startswith("#"), (name, value)
    assert not re.search(r"https?:", page), "no external resources at all"
    assert "default-src 'none'" in page, "a CSP that forbids scripts"
    assert parsed.tags.count("svg") >= len(result.features)


def test_html_shows_the_context_and_every_feature_drifted_first(demo_report):
    baseline, aggregate, result = demo_report
    page = render_html(result, baseline, aggregate, **CONTEXT)
    assert "churn" in page and "version 7" in page and "run-42" in page
    assert "2026-05-01T00:00:00Z" in page and "2026-05-02T00:00:00Z" in page
    assert f"{result.rows:,}" in page and f"{round(result.drift_score * 100)}%" in page

    sections = re.findall(r'<article id="f\d+" class="([a-z_]+)">\s*<h3>([^<]+) ', page)
    assert [name for _, name in sections] == [name for name in _expected_order(result)]
    assert sorted(name for _, name in sections) == sorted(f.name for f in result.features)
    order = [verdict for verdict, _ in sections]
    assert "drift" in order and "ok" in order
    assert order == sorted(order, key=["drift", "ok", "insufficient_data"].index), "drifted first"
    drifted = [f for f in result.features if f.verdict == "drift"]
    psis = {f.name: f.psi for f in drifted}
    assert [psis[n] for v, n in sections if v == "drift"] == sorted(psis.values(), reverse=True), "then by PSI"

    # The summary table links to each section.
    for anchor in re.findall(r'href="#(f\d+)"', page):
        assert f'id="{anchor}"' in page


def _expected_order(result):
    rank = {"drift": 0, "ok": 1, "insufficient_data": 2}
    return [f.name for f in sorted(result.features, key=lambda f: (rank[f.verdict], -(f.psi or -1)))]


def test_untrusted_names_and_values_are_escaped():
    # Feature names are validated by the schema, but a baseline is only a JSON document: build one
    # around a hostile name anyway, with a hostile category, unseen value and unknown field.
    specs = [
        FeatureSpec.model_construct(name=EVIL, type="number", nullable=False, categories=None),
        FeatureSpec(name="kind", type="category", categories=["safe", EVIL]),
    ]
    schema = FeatureSchema.model_construct(features=specs)
    rng = np.random.default_rng(1)
    n = 2_000
    matrix = np.empty((n, 2), dtype=object)
    matrix[:, 0] = rng.normal(size=n)
    matrix[:, 1] = rng.choice(["safe", EVIL], size=n)
    baseline = baseline_profile(matrix, schema)
    records = [
        {EVIL: float(x), "kind": EVIL if i % 3 else f"{EVIL}-new", f"{EVIL}!": 1}
        for i, x in enumerate(rng.normal(2.0, 1.0, n))
    ]
    aggregate = DriftAggregate(baseline).add_records(records)
    result = evaluate(baseline, aggregate)
    assert result.drifted_features == 2

    page = render_html(result, baseline, aggregate, model=EVIL, version=EVIL, run_id=EVIL, window_start=EVIL)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = parse(page)
    assert "script" not in parsed.tags

    report = render_json(result, baseline, aggregate, model=EVIL, version="1")
    assert report["model"] == EVIL, "JSON keeps the raw strings; escaping is the HTML's job"
    assert report["charts"]["kind"]["unseen_values"]["values"] == {f"{EVIL}-new": 667}


def test_json_report_is_plain_json_with_chart_data(demo_report):
    baseline, aggregate, result = demo_report
    report = render_json(result, baseline, aggregate, generated_at="2026-05-02T00:05:00Z", **CONTEXT)
    text = json.dumps(report, allow_nan=False)
    assert len(text) < 100_000
    assert report["model"] == "churn" and report["version"] == "7" and report["run_id"] == "run-42"
    assert report["window"] == {"start": "2026-05-01T00:00:00Z", "end": "2026-05-02T00:00:00Z"}
    assert report["result"] == json.loads(json.dumps(result.to_dict()))
    assert report["order"] == _expected_order(result)
    income = report["charts"]["income"]
    assert income["kind"] == "density" and len(income["edges"]) == len(income["reference"]) + 1
    assert sum(income["psi_groups"]["reference"]) == pytest.approx(1.0, abs=1e-5)
    calls = report["charts"]["support_calls"]
    assert calls["kind"] == "values" and len(calls["values"]) == len(calls["current"])
    plan = report["charts"]["plan"]
    assert plan["labels"] == [*demo.PLANS, "(unseen)"] and sum(plan["current"]) == pytest.approx(1.0, abs=1e-5)


def test_report_of_an_empty_window(demo_report):
    baseline, _, _ = demo_report
    empty = DriftAggregate(baseline)
    result = evaluate(baseline, empty)
    page = render_html(result, baseline, empty, model="churn", version="7")
    parse(page)
    assert page.count('class="badge insufficient_data') >= 12
    json.dumps(render_json(result, baseline, empty, model="churn", version="7"), allow_nan=False)
