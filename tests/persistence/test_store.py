"""The WAL SQLite position store: durability settings, atomic commits, refusal to open unsafely."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from domain.errors import (
    StaleVersion,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreSchemaTooNew,
    SymbolHasLivePosition,
)
from domain.models import Fill, OrderRole, OrderStatus, OrderUpdate
from domain.position import Change, Position
from domain.position_data import FillRecord
from domain.position_table import State
from persistence import schema
from persistence.codec import position_to_record
from persistence.store import PositionStore
from tests.domain import factory as f


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "positions.db"


@pytest.fixture
def store(db: Path):
    with PositionStore.open(db) as s:
        yield s


def test_durability_settings_are_in_force(store: PositionStore) -> None:
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 2  # FULL
    assert store.pragma("busy_timeout") == 5000
    assert store.schema_version == schema.latest_version()


def test_a_change_commits_position_transition_orders_and_fills_together(
    store: PositionStore,
) -> None:
    pos, opened = f.Position.open("s1", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    seq = store.commit(pos, opened)
    assert [o.client_id for o in store.orders(transition_seq=seq)] == ["bst-s1-en-1"]
    assert store.order_status("bst-s1-en-1") is OrderStatus.SENDING
    change = f.entry_fill(pos, "2")
    assert change is not None
    seq = store.commit(pos, change)
    assert store.fill_ids("s1") == set(pos.data.fill_ids)
    assert store.order_status("bst-s1-en-1") is OrderStatus.FILLED
    log = store.transitions("s1")
    assert [(t["trigger"], t["source"], t["dest"]) for t in log] == [
        ("opened", None, "pending"),
        ("entry_filled", "pending", "unprotected"),
    ]
    assert log[-1]["seq"] == seq


def test_loading_rebuilds_live_positions_at_their_state(db: Path) -> None:
    with PositionStore.open(db) as store:
        live = {}
        builders = (f.pending, f.unprotected, f.protected, f.exiting, f.quarantined, f.closed)
        for n, builder in enumerate(builders):
            pos = builder(symbol=f"PF_L{n}USD")
            store.commit(pos, _snapshot_change(pos))
            live[pos.id] = pos
    with PositionStore.open(db) as store:
        loaded = store.load_active()
    assert {p.id: p.current for p in loaded} == {
        pid: p.current for pid, p in live.items() if not p.is_terminal
    }
    for pos in loaded:
        assert position_to_record(pos) == position_to_record(live[pos.id])
        # a rebuilt machine accepts the next event of its state
        if pos.current is State.PROTECTED:
            f.stop_fill(f.entry_done(pos), "1")
            assert pos.current is State.CLOSED


def _snapshot_change(pos: f.Position) -> f.Change:
    """A creation change for a position built in memory (tests only)."""
    pos.version = 1
    return f.Change(pos.id, "opened", None, pos.current, 1, 1)


def _a_failed_commit_leaves_nothing_behind(store: PositionStore, position_id: str) -> None:
    """Open a position, then commit a change that fails half way: only the opening stays."""
    pos, opened = f.Position.open(position_id, f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    store.commit(pos, opened)
    change = f.entry_fill(pos, "1")
    assert change is not None
    bad = replace(change, fills=(*change.fills, change.fills[0]))  # duplicate fill id
    with pytest.raises(sqlite3.IntegrityError):
        store.commit(pos, bad)
    assert store.states()[position_id] is State.PENDING
    assert len(store.transitions(position_id)) == 1
    assert store.fill_ids(position_id) == set()


def test_failed_commit_leaves_nothing_behind(store: PositionStore) -> None:
    _a_failed_commit_leaves_nothing_behind(store, "s2")


def test_stale_version_is_refused(store: PositionStore) -> None:
    pos, opened = f.Position.open("s3", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    store.commit(pos, opened)
    change = f.entry_fill(pos, "1")
    assert change is not None
    store.commit(pos, change)
    with pytest.raises(StaleVersion):
        store.commit(pos, change)


def test_journal_updates_keep_a_history(store: PositionStore) -> None:
    pos, opened = f.Position.open("s4", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    store.commit(pos, opened)
    store.update_order(OrderUpdate("bst-s4-en-1", OrderStatus.UNKNOWN), at=2)
    assert [o.client_id for o in store.orders(statuses={OrderStatus.UNKNOWN})] == ["bst-s4-en-1"]
    store.update_order(OrderUpdate("bst-s4-en-1", OrderStatus.ACKED, "EX-1"), at=3)
    (order,) = store.orders(position_id="s4")
    assert (order.status, order.exchange_id) == (OrderStatus.ACKED, "EX-1")
    assert store.count("order_events") == 3
    with pytest.raises(StoreError):
        store.update_order(OrderUpdate("bst-nope-en-1", OrderStatus.ACKED), at=4)


def test_transition_log_is_append_only(store: PositionStore, db: Path) -> None:
    pos, opened = f.Position.open("s5", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    store.commit(pos, opened)
    raw = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE transitions SET dest = 'closed'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM transitions")
    raw.close()


def test_position_ids_are_unique_and_persisted(db: Path) -> None:
    with PositionStore.open(db) as store:
        first = [store.next_position_id(1_763_000_000_000) for _ in range(3)]
    with PositionStore.open(db) as store:
        later = store.next_position_id(1_763_000_000_000)
    assert len({*first, later}) == 4


def test_kv_values_round_trip(store: PositionStore) -> None:
    store.set_value("kill_switch", {"latched": True, "reason": "test"}, at=1)
    assert store.get_value("kill_switch") == {"latched": True, "reason": "test"}
    assert store.get_value("missing", 7) == 7


# --------------------------------------------------------------------- refusing to open


def test_corrupt_file_is_refused_and_left_untouched(db: Path) -> None:
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    with pytest.raises(StoreCorrupt, match="not an SQLite database"):
        PositionStore.open(db)
    assert db.read_bytes() == before


def test_damaged_pages_are_refused_and_left_untouched(db: Path) -> None:
    with PositionStore.open(db) as store:
        for n in range(30):
            pos, opened = f.Position.open(
                store.next_position_id(1), f"PF_D{n}USD", f.PositionSide.LONG, f.D(2), at=1
            )
            store.commit(pos, opened)
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    for start in range(page, len(data), page):  # scribble over every b-tree page header
        data[start : start + 12] = b"\xff" * 12
    db.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt):
        PositionStore.open(db)
    assert db.read_bytes() == bytes(data)


def test_newer_schema_is_refused_and_left_untouched(db: Path) -> None:
    PositionStore.open(db).close()
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    before = db.read_bytes()
    with pytest.raises(StoreSchemaTooNew, match="schema version 99"):
        PositionStore.open(db)
    assert db.read_bytes() == before


def test_foreign_sqlite_database_is_refused(db: Path) -> None:
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE something_else (x)")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="not a Bastion position store"):
        PositionStore.open(db)


def test_second_writer_in_the_same_process_is_refused(store: PositionStore, db: Path) -> None:
    with pytest.raises(StoreLocked, match="another running Bastion"):
        PositionStore.open(db)


def test_second_writer_in_another_process_is_refused_and_lock_dies_with_it(db: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from persistence.store import PositionStore; "
            f"s = PositionStore.open({str(db)!r}); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked, match=f"pid {holder.pid}"):
            PositionStore.open(db)
    finally:
        holder.kill()
        holder.wait()
    PositionStore.open(db).close()  # the kernel released the lock with the process


def test_readonly_open_needs_no_lock_and_cannot_write(store: PositionStore, db: Path) -> None:
    pos, opened = f.Position.open("s6", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    store.commit(pos, opened)
    with PositionStore.open(db, readonly=True) as reader:
        assert [p.id for p in reader.load_active()] == ["s6"]
        with pytest.raises(StoreError, match="read-only"):
            reader.set_value("x", 1, at=1)


def test_upgrade_path_applies_missing_steps_and_keeps_a_backup(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PositionStore.open(db) as store:
        pos, opened = f.Position.open("s7", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
        store.commit(pos, opened)
    step = ("ALTER TABLE positions ADD COLUMN note TEXT NOT NULL DEFAULT ''",)
    monkeypatch.setitem(schema.MIGRATIONS, 2, step)
    with PositionStore.open(db) as store:
        assert store.schema_version == 2
        assert [p.id for p in store.load_active()] == ["s7"]
    backup = db.with_name(db.name + ".v1.bak")
    raw = sqlite3.connect(backup)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    assert raw.execute("SELECT id FROM positions").fetchall() == [("s7",)]
    raw.close()


def test_fill_record_round_trip_through_the_store(store: PositionStore) -> None:
    pos = f.pending()
    store.commit(pos, _snapshot_change(pos))
    change = f.exit_fill(pos, "1")  # waits for its entry
    assert change is not None
    store.commit(pos, change)
    (held,) = store.load(pos.id).data.deferred_exits
    assert isinstance(held, FillRecord)
    assert held == pos.data.deferred_exits[0]


def test_one_live_position_per_symbol(store: PositionStore) -> None:
    first, opened = f.Position.open("r1", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    store.commit(first, opened)
    second, opened_again = f.Position.open("r2", f.SYMBOL, f.PositionSide.SHORT, f.D(1), at=2)
    with pytest.raises(SymbolHasLivePosition, match="already has a live position r1"):
        store.commit(second, opened_again)
    second.discard()
    assert set(store.states()) == {"r1"}
    assert store.orders(position_id="r2") == []  # its entry was never written, so never sent
    change = first.on_entry_cancelled(first.entry_client_id, at=3)
    store.commit(first, change)  # terminal now: the symbol is free again
    third, opened_third = f.Position.open("r3", f.SYMBOL, f.PositionSide.SHORT, f.D(1), at=4)
    store.commit(third, opened_third)
    assert store.states() == {"r1": State.CANCELLED, "r3": State.PENDING}


def test_a_change_that_does_not_match_its_position_is_refused(store: PositionStore) -> None:
    pos, opened = f.Position.open("m1", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    with pytest.raises(StoreError, match="does not match"):
        store.commit(pos, replace(opened, dest=State.CLOSED))


def test_a_scratch_store_commits_in_batches_and_a_failed_change_still_leaves_nothing(
    db: Path,
) -> None:
    with PositionStore.open(db, durable=False) as scratch:
        assert scratch.pragma("synchronous") == 0  # OFF
        assert scratch.pragma("temp_store") == 2  # MEMORY
        # the failed change is undone inside the batch; the one before it stays
        _a_failed_commit_leaves_nothing_behind(scratch, "s9")
        reader = sqlite3.connect(db)
        assert reader.execute("SELECT COUNT(*) FROM positions").fetchone()[0] == 0
        scratch.flush()  # other readers see the batch once it is committed
        assert reader.execute("SELECT COUNT(*) FROM positions").fetchone()[0] == 1
        scratch.set_value("k", 1, at=2)
        reader.close()
    with PositionStore.open(db, readonly=True) as again:  # closing commits what was left
        assert again.get_value("k") == 1
        assert again.states() == {"s9": State.PENDING}


def test_client_ids_are_the_journal_orders_ids_in_order(store: PositionStore) -> None:
    pos, opened = f.Position.open("s10", f.SYMBOL, f.PositionSide.LONG, f.D(2), at=1)
    store.commit(pos, opened)
    store.commit(pos, f.entry_fill(pos, "2"))
    placed = pos.submit_stop(f.D("90"), at=f.now())
    store.commit(pos, placed)
    store.commit(pos, pos.on_stop_acked(placed.orders[0].client_id, at=f.now(), exchange_id="X"))
    for statuses in (
        {OrderStatus.ACKED},
        {OrderStatus.FILLED, OrderStatus.ACKED},
        set(OrderStatus),
    ):
        expected = [o.client_id for o in store.orders(position_id="s10", statuses=statuses)]
        assert store.client_ids(position_id="s10", statuses=statuses) == expected
    assert store.client_ids(position_id="s10", statuses={OrderStatus.ACKED}) == ["bst-s10-sl-1"]


def test_a_scratch_batch_the_database_rolled_back_is_reported_not_lost_silently(
    db: Path,
) -> None:
    def fails_after_the_database_rolled_back(scratch: PositionStore) -> None:
        with scratch._tx() as conn:
            conn.execute("ROLLBACK")  # what SQLite does on its own after an I/O error
            raise sqlite3.OperationalError("disk I/O error")

    with PositionStore.open(db, durable=False) as scratch:
        scratch.set_value("k", 1, at=1)
        with pytest.raises(StoreError, match="rolled back its batch"):
            fails_after_the_database_rolled_back(scratch)
        scratch.set_value("k", 2, at=2)  # the store goes on with a new batch
        assert scratch.get_value("k") == 2


def test_a_scratch_batch_keeps_its_earlier_transactions_when_a_later_one_fails(
    db: Path, tmp_path: Path
) -> None:
    """The rebuilt batch holds exactly what a durable store holds after the same calls."""

    def fill(pos: Position, fill_id: str, role: OrderRole, qty: str, at: int) -> Change:
        side = pos.side.exit_side if role.reduces else pos.side.entry_side
        client_id = pos.entry_client_id if role is OrderRole.ENTRY else None
        made = Fill(fill_id, pos.symbol, side, f.D(qty), f.D(100), at, client_id=client_id)
        change = pos.apply_fill(made, role, at=at)
        assert change is not None
        return change

    def calls(store: PositionStore) -> None:
        for n, symbol in enumerate(("PF_XBTUSD", "PF_ETHUSD", "PF_SOLUSD")):
            pos, opened = f.Position.open(f"b{n}", symbol, f.PositionSide.LONG, f.D(2), at=n)
            store.commit(pos, opened)
            store.commit(pos, fill(pos, f"e{n}", OrderRole.ENTRY, "2", 10 + n))
            store.set_value("cursor", n, at=n)
        pos = store.load("b0")
        change = fill(pos, "x1", OrderRole.EXIT, "1", 20)
        bad = replace(change, fills=(*change.fills, change.fills[0]))  # duplicate fill id
        with pytest.raises(sqlite3.IntegrityError):
            store.commit(pos, bad)
        pos.discard()
        pos = store.load("b0")
        store.commit(pos, fill(pos, "x2", OrderRole.EXIT, "1", 21))  # numbering goes on

    def rows(path: Path) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(path)
        tables = ("positions", "transitions", "orders", "order_events", "fills", "kv")
        out = [row for t in tables for row in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")]
        conn.close()
        return out

    with PositionStore.open(db, durable=False) as scratch:
        calls(scratch)
    durable_path = tmp_path / "durable.db"
    with PositionStore.open(durable_path) as durable:
        calls(durable)
    assert rows(db) == rows(durable_path)
