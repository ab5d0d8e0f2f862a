import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops.bench import harness
from ops.bench.__main__ import main
from ops.bench.harness import REGISTRY, UNITS, BenchError, BenchResult, BenchSpec, Metric

ROOT = Path(__file__).resolve().parents[2]
STORE_METRICS = {
    "durable_transitions_per_s": "per_s",
    "commit_p50_ms": "ms",
    "commit_p99_ms": "ms",
    "load_active_ms": "ms",
    "transitions": "count",
}


def _run(*args: str, tmpdir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [sys.executable, "-m", "ops.bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _single_json(stdout: str) -> dict:
    """The one JSON document stdout must consist of (a trailing newline allowed)."""
    document, end = json.JSONDecoder().raw_decode(stdout)
    assert stdout[end:].strip() == "", f"extra output after the JSON document: {stdout[end:]!r}"
    assert isinstance(document, dict)
    return document


def _check_bench_object(obj: dict) -> None:
    assert set(obj) == {"bench", "params", "results"}
    assert isinstance(obj["bench"], str)
    assert isinstance(obj["params"], dict)
    assert obj["results"], "a benchmark reports at least one metric"
    for name, metric in obj["results"].items():
        assert set(metric) == {"value", "unit"}, name
        assert metric["unit"] in UNITS, name
        value = metric["value"]
        assert isinstance(value, int | float) and not isinstance(value, bool), name
        assert value > 0, name


def test_store_quick_prints_one_json_document(tmp_path: Path) -> None:
    proc = _run("store", "--quick", tmpdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = _single_json(proc.stdout)
    _check_bench_object(doc)
    assert doc["bench"] == "store"
    results = doc["results"]
    assert {name: results[name]["unit"] for name in STORE_METRICS} == STORE_METRICS
    assert results["commit_p50_ms"]["value"] <= results["commit_p99_ms"]["value"]
    params = doc["params"]
    assert params["journal_mode"] == "wal"
    assert params["synchronous"] == "FULL"
    assert params["quick"] is True
    assert 50 <= params["transitions"] <= 200
    assert results["transitions"]["value"] == params["transitions"]
    assert params["transitions"] == params["positions"] * params["transitions_per_position"]
    for key in ("sqlite_version", "dir", "fs_type", "active_positions"):
        assert key in params
    assert "store:" in proc.stderr  # progress goes to stderr
    assert params["dir"] == str(tmp_path)
    assert list(tmp_path.iterdir()) == [], "the store's directory was not removed"


def test_all_quick_lists_every_benchmark() -> None:
    proc = _run("all", "--quick")
    assert proc.returncode == 0, proc.stderr
    doc = _single_json(proc.stdout)
    assert set(doc) == {"benches"}
    assert [b["bench"] for b in doc["benches"]] == list(REGISTRY)
    for obj in doc["benches"]:
        _check_bench_object(obj)
    store = next(b for b in doc["benches"] if b["bench"] == "store")
    assert set(STORE_METRICS) <= set(store["results"])
    rec = next(b for b in doc["benches"] if b["bench"] == "reconcile")["results"]
    assert rec["reconcile_requests"]["value"] == rec["reconcile_requests_small"]["value"]
    backtest = next(b for b in doc["benches"] if b["bench"] == "backtest")
    assert backtest["params"]["symbols"] == 10 and backtest["params"]["timeframe"] == "5m"
    assert backtest["results"]["candles"]["value"] == 10 * 7 * 288  # 10 symbols x 7 days of 5m
    assert backtest["results"]["trades"]["value"] > 0
    assert backtest["results"]["host_loop_s"]["value"] > 0
    assert backtest["results"]["kill_switch_latches"]["unit"] == "count"
    history = next(b for b in doc["benches"] if b["bench"] == "history")
    expected = {"sqlite_events_per_s", "tell_per_s"}
    if os.environ.get("BASTION_TEST_PG_URL"):  # CI: PostgreSQL must have been measured
        expected.add("postgres_events_per_s")
    assert expected <= set(history["results"]), history


def test_unknown_name_exits_2_with_the_known_names() -> None:
    proc = _run("no-such-bench")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "no-such-bench" in proc.stderr
    assert "store" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_the_benchmarks() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    for name in (*REGISTRY, "all"):
        assert name in proc.stdout


# --------------------------------------------------------------------- harness, in process


def fake_bench(quick: bool) -> BenchResult:
    print("noise that must not reach stdout")
    result = BenchResult(params={"quick": quick})
    result.add("latency_ms", 1.23456789, "ms")
    return result


def failing_bench(quick: bool) -> BenchResult:
    raise RuntimeError("disk on fire")


def test_metric_rejects_unknown_units_and_non_finite_values() -> None:
    with pytest.raises(BenchError, match="unit"):
        Metric(1.0, "seconds")
    with pytest.raises(BenchError, match="finite"):
        Metric(float("nan"), "ms")
    result = BenchResult()
    result.add("x", 1, "count")
    with pytest.raises(BenchError, match="twice"):
        result.add("x", 2, "count")


def test_run_named_uses_the_registry_and_rounds_values() -> None:
    registry = {"fake": BenchSpec("fake", f"{__name__}:fake_bench", "test")}
    one = harness.run_named("fake", quick=True, registry=registry)
    assert one == {
        "bench": "fake",
        "params": {"quick": True},
        "results": {"latency_ms": {"value": 1.23457, "unit": "ms"}},
    }
    assert harness.run_named("all", quick=False, registry=registry) == {
        "benches": [{**one, "params": {"quick": False}}]
    }
    with pytest.raises(BenchError, match="known: fake"):
        harness.run_named("nope", quick=True, registry=registry)


def test_main_keeps_stdout_for_json_and_reports_failures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(REGISTRY, "fake", BenchSpec("fake", f"{__name__}:fake_bench", "t"))
    monkeypatch.setitem(REGISTRY, "boom", BenchSpec("boom", f"{__name__}:failing_bench", "t"))

    assert main(["fake"]) == 0
    out, err = capsys.readouterr()
    assert _single_json(out)["bench"] == "fake"
    assert "noise" in err

    assert main(["boom", "--quick"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "disk on fire" in err
    assert "'boom' failed" in err
