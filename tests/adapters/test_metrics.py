import math
import re
import threading

import pytest

from adapters.metrics import (
    LIVE_STATES,
    PROTECTION_LATENCY_BUCKETS,
    BastionMetrics,
    Registry,
    escape_label_value,
)

# One sample line of the text format: name, optional {labels}, value.
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, dict[str, str], float]]]:
    """Parse the exposition text strictly: every line must be HELP, TYPE or a sample."""
    assert text.endswith("\n")
    meta: dict[str, tuple[str, str]] = {}
    helps: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name not in meta, f"TYPE repeated for {name}"
            meta[name] = (kind, helps[name])
        else:
            match = SAMPLE_RE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, raw_labels, raw_value = match.groups()
            labels = {}
            if raw_labels:
                inner = raw_labels[1:-1]
                pairs = LABEL_RE.findall(inner)
                assert ",".join(f'{k}="{v}"' for k, v in pairs) == inner
                labels = {k: _unescape(v) for k, v in pairs}
            samples.append((name, labels, float(raw_value)))
    return meta, samples


def test_counter_gauge_render_and_parse_back() -> None:
    reg = Registry()
    sent = reg.counter("x_orders_total", "Orders sent.", ["role"])
    lag = reg.gauge("x_lag_seconds", "Lag.", ["symbol"])
    plain = reg.gauge("x_ready", "Ready flag.")
    sent.inc(role="sl")
    sent.inc(2, role="sl")
    sent.inc(role="en")
    lag.set(1.5, symbol="BTC/USD:USD")
    lag.dec(0.25, symbol="BTC/USD:USD")
    meta, samples = parse(reg.render())
    assert meta == {
        "x_orders_total": ("counter", "Orders sent."),
        "x_lag_seconds": ("gauge", "Lag."),
        "x_ready": ("gauge", "Ready flag."),
    }
    assert ("x_orders_total", {"role": "sl"}, 3.0) in samples
    assert ("x_orders_total", {"role": "en"}, 1.0) in samples
    assert ("x_lag_seconds", {"symbol": "BTC/USD:USD"}, 1.25) in samples
    assert ("x_ready", {}, 0.0) in samples  # unlabelled metrics are shown before any update
    assert plain.value() == 0.0


def test_label_values_are_escaped_and_round_trip() -> None:
    reg = Registry()
    g = reg.gauge("x_g", 'Help with a \\ backslash\nand "a newline".', ["v"])
    nasty = 'a"b\\c\nd}{,='
    g.set(1, v=nasty)
    text = reg.render()
    assert '\\"' in text
    assert "\\\\" in text
    assert "\\n" in text
    assert len(text.splitlines()) == 3  # the newline in the value did not split the line
    assert '# HELP x_g Help with a \\\\ backslash\\nand "a newline".' in text
    _, samples = parse(text)
    assert samples == [("x_g", {"v": nasty}, 1.0)]
    assert escape_label_value('"\\\n') == '\\"\\\\\\n'


def test_histogram_buckets_cumulative_and_monotonic() -> None:
    reg = Registry()
    h = reg.histogram("x_latency_seconds", "Latency.", [0.01, 0.1, 1.0], ["kind"])
    for value in (0.005, 0.01, 0.05, 0.5, 3.0, 0.07):
        h.observe(value, kind="stop")
    h.observe(0.2, kind='we"ird')
    meta, samples = parse(reg.render())
    assert meta["x_latency_seconds"][0] == "histogram"
    buckets = [
        (s[1]["le"], s[2])
        for s in samples
        if s[0] == "x_latency_seconds_bucket" and s[1]["kind"] == "stop"
    ]
    assert buckets == [("0.01", 2), ("0.1", 4), ("1", 5), ("+Inf", 6)]  # le is inclusive
    values = [v for _, v in buckets]
    assert values == sorted(values)
    assert ("x_latency_seconds_count", {"kind": "stop"}, 6.0) in samples
    total = next(
        s[2] for s in samples if s[0] == "x_latency_seconds_sum" and s[1]["kind"] == "stop"
    )
    assert total == pytest.approx(3.635)
    other = [s for s in samples if s[1].get("kind") == 'we"ird']
    assert ("x_latency_seconds_bucket", {"kind": 'we"ird', "le": "0.1"}, 0.0) in other
    assert ("x_latency_seconds_bucket", {"kind": 'we"ird', "le": "1"}, 1.0) in other


def test_invalid_use_raises() -> None:
    reg = Registry()
    c = reg.counter("x_total", "c", ["role"])
    with pytest.raises(ValueError, match="cannot decrease"):
        c.inc(-1, role="sl")
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(rol="sl")  # a typo in a label name is an error, not a new series
    with pytest.raises(ValueError, match="takes labels"):
        c.inc()
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("x_total", "again")
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.gauge("x-y", "bad")
    with pytest.raises(ValueError, match="reserved"):
        reg.histogram("x_h", "h", [1.0], ["le"])
    with pytest.raises(ValueError, match="strictly increasing"):
        reg.histogram("x_h2", "h", [1.0, 1.0])


def test_concurrent_updates_are_not_lost() -> None:
    reg = Registry()
    c = reg.counter("x_total", "c", ["t"])
    h = reg.histogram("x_h", "h", [0.5])
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(500):
            c.inc(t="a")
            h.observe(0.1)
            reg.render()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.value(t="a") == 4000
    _, samples = parse(reg.render())
    assert ("x_h_count", {}, 4000.0) in samples
    assert ("x_h_bucket", {"le": "0.5"}, 4000.0) in samples


def test_bastion_metrics_names_types_and_defaults() -> None:
    m = BastionMetrics()
    m.orders_sent.inc(role="sl")
    m.orders_rejected.inc(role="en")
    m.feed_lag.set(0.8, symbol="BTC/USD:USD")
    m.actor_restarts.inc(actor="execution")
    m.protection_latency.observe(0.042)
    m.kill_switch.set(1)
    m.ready.set(1)
    m.set_positions({"protected": 2, "unprotected": 1})
    meta, samples = parse(m.render())
    assert {name: kind for name, (kind, _) in meta.items()} == {
        "bastion_positions": "gauge",
        "bastion_orders_sent_total": "counter",
        "bastion_orders_rejected_total": "counter",
        "bastion_feed_lag_seconds": "gauge",
        "bastion_actor_restarts_total": "counter",
        "bastion_protection_latency_seconds": "histogram",
        "bastion_kill_switch": "gauge",
        "bastion_ready": "gauge",
    }
    positions = {s[1]["state"]: s[2] for s in samples if s[0] == "bastion_positions"}
    assert set(positions) == set(LIVE_STATES)
    assert "closed" not in positions
    assert positions["protected"] == 2
    assert positions["unprotected"] == 1
    assert positions["quarantined"] == 0  # every live state is shown, at zero when empty
    assert ("bastion_kill_switch", {}, 1.0) in samples
    les = [s[1]["le"] for s in samples if s[0] == "bastion_protection_latency_seconds_bucket"]
    assert float(les[0]) == 0.001
    assert float(les[-2]) == 10.0
    assert les[-1] == "+Inf"
    assert len(les) == len(PROTECTION_LATENCY_BUCKETS) + 1
    assert all(not math.isinf(b) for b in PROTECTION_LATENCY_BUCKETS)
    m.set_positions({"protected": 1})
    assert m.positions.value(state="unprotected") == 0  # states not given are reset
