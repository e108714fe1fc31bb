"""The store contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from campaign import chain
from campaign.errors import StoreError
from campaign.ledger import verify
from campaign.models import OfficeHours
from campaign.pacing import InstitutionPolicy, Pacer, PacingConfig
from campaign.store import NewMessage, Outcome, ReceiptEntry, Report, open_store
from campaign.store.copy import copy_state
from campaign.store.sql import SqlStore

NOW = 1_795_000_000_000  # a fixed moment (epoch ms)
FREE = Pacer(PacingConfig(rate=10_000, per_domain_rate=10_000))


def new(n: int, *, campaign: str = "c", recipient: str | None = None, email: str | None = None) -> NewMessage:
    email = email or f"office{n}@inst{n}.example"
    return NewMessage(
        campaign=campaign,
        letter="l",
        recipient=recipient or f"inst-{n}",
        email=email,
        email_key=email.casefold(),
        domain=email.rpartition("@")[2],
        contact_name=None,
        lang="en",
        subject=f"letter {n}",
        message_id=f"<{campaign}-{n}@campaign.example>",
        envid=f"{campaign}{n}".encode().hex().ljust(32, "0")[:32],
        body=f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(),
        content_sha256=chain.sha256_hex(str(n).encode()),
    )


def prefix(row: dict, body: bytes, at: int) -> bytes:
    return f"Date: {at}\r\n".encode()


def queue(store: SqlStore, count: int, **kw: object) -> None:
    with store.enqueue(NOW) as session:
        for n in range(count):
            session.add(new(n, **kw))  # type: ignore[arg-type]


def claim(
    store: SqlStore, limit: int = 10, worker: str = "w1", now: int = NOW, pacer: Pacer = FREE, lease: int = 60_000
):
    return store.claim(now, worker=worker, limit=limit, pacer=pacer, lease_ms=lease, prefix=prefix)


def sent(item, worker: str = "w1") -> Outcome:  # type: ignore[no-untyped-def]
    return Outcome(
        id=item.id,
        message_id=item.message_id,
        campaign=item.campaign,
        status="sent",
        event="sent",
        attempt=item.attempt,
        code=250,
        reply="250 ok",
    )


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    s = open_store(store_url)
    yield s
    s.close()


def test_migrations_are_applied_once(store_url: str) -> None:
    first = open_store(store_url)
    names = first.migrations()
    first.close()
    again = open_store(store_url)
    assert again.migrations() == names and names[0] == "0001_queue_and_log"
    again.close()


def test_enqueue_is_idempotent_on_the_key(store: SqlStore) -> None:
    queue(store, 3)
    with store.enqueue(NOW) as session:
        existing = session.lookup("c", "l", "inst-1", "office1@inst1.example")
        assert existing is not None and existing.message_id == "<c-1@campaign.example>"
        assert session.lookup("c", "l", "inst-9", "x@y.example") is None
    assert len(store.messages()) == 3
    with pytest.raises(StoreError), store.enqueue(NOW) as session:
        session.add(new(1))  # the same key twice violates the unique constraint
    assert len(store.messages()) == 3


def test_a_failed_enqueue_adds_nothing(store: SqlStore) -> None:
    with pytest.raises(RuntimeError), store.enqueue(NOW) as session:
        session.add(new(1))
        raise RuntimeError("render failed")
    assert store.messages() == [] and store.chain_head()[0] == 0


def test_claim_then_outcome(store: SqlStore) -> None:
    queue(store, 3)
    result = claim(store, limit=2)
    assert [i.message_id for i in result.items] == ["<c-0@campaign.example>", "<c-1@campaign.example>"]
    assert all(i.wire.startswith(b"Date: ") for i in result.items)
    assert {m.status.value for m in store.messages()} == {"sending", "queued"}
    assert store.finish([sent(result.items[0])], NOW, worker="w1") == 1
    assert store.finish([sent(result.items[1])], NOW, worker="someone-else") == 0  # not its lease
    kinds = [e.kind for e in store.events()]
    assert kinds.count("sending") == 2 and kinds[-1] == "late_outcome"
    assert verify(store).ok


def test_the_same_bytes_on_every_attempt(store: SqlStore) -> None:
    queue(store, 1)
    first = claim(store).items[0]
    store.finish(
        [
            Outcome(
                id=first.id,
                message_id=first.message_id,
                campaign="c",
                status="deferred",
                event="deferred",
                attempt=1,
                code=451,
                next_attempt_ms=NOW,
            )
        ],
        NOW,
        worker="w1",
    )
    second = claim(store, now=NOW + 5000).items[0]
    assert second.wire == first.wire and second.wire_sha256 == first.wire_sha256 and second.attempt == 2


def test_recovery_of_crashed_sending_rows(store: SqlStore) -> None:
    queue(store, 2)
    claim(store, limit=2, lease=1000)
    assert store.recover(NOW + 500, all_sending=False) == []  # leases still live
    recovered = store.recover(NOW + 2000, all_sending=False)
    assert len(recovered) == 2
    assert all(m.status.value == "deferred" and m.possible_duplicate for m in store.messages())
    again = claim(store, now=NOW + 3000, worker="w2").items
    assert len(again) == 2 and all(i.possible_duplicate for i in again)
    assert [e.kind for e in store.events()].count("crash_recovered") == 2


def test_unclaim_restores_the_message(store: SqlStore) -> None:
    queue(store, 1)
    item = claim(store).items[0]
    store.unclaim([item], NOW, worker="w1", reason="auth failed")
    message = store.messages()[0]
    assert message.status.value == "queued" and message.attempts == 0


def test_events_are_append_only(store: SqlStore) -> None:
    queue(store, 1)
    with pytest.raises(StoreError, match="append-only"), store.transaction() as tx:
        tx.execute("UPDATE events SET kind = 'x'")
    with pytest.raises(StoreError, match="append-only"), store.transaction() as tx:
        tx.execute("DELETE FROM events")


def test_concurrent_claimers_never_share_a_message(store_url: str) -> None:
    setup = open_store(store_url)
    queue(setup, 200)
    setup.close()
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        s = open_store(store_url)
        try:
            mine = claimed.setdefault(name, [])
            while True:
                items = claim(s, limit=5, worker=name).items
                if not items:
                    return
                mine.extend(i.message_id for i in items)
                s.finish([sent(i) for i in items], NOW, worker=name)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    everything = [m for ids in claimed.values() for m in ids]
    assert len(everything) == 200 and len(set(everything)) == 200
    check = open_store(store_url)
    assert verify(check).ok  # many writers, one chain
    assert {m.status.value for m in check.messages()} == {"sent"}
    check.close()


def test_daily_cap_holds_across_concurrent_claimers(store_url: str) -> None:
    setup = open_store(store_url)
    with setup.enqueue(NOW) as session:
        for n in range(30):
            session.add(new(n, recipient="ohchr", email=f"a{n}@ohchr.example"))
    setup.close()
    policy = InstitutionPolicy(max_per_day=7)
    pacer = Pacer(PacingConfig(rate=10_000, per_domain_rate=10_000, institutions={"ohchr": policy}))
    total: list[int] = []

    def worker(name: str) -> None:
        s = open_store(store_url)
        try:
            for _ in range(10):
                items = claim(s, limit=3, worker=name, pacer=pacer).items
                total.append(len(items))
                s.finish([sent(i) for i in items], NOW, worker=name)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(total) == 7
    s = open_store(store_url)
    waiting = s.waiting()
    assert waiting and waiting[0][0] == "daily cap 7 reached for ohchr" and waiting[0][1] == 23
    s.close()


def test_office_hours_park_messages_without_an_attempt(store: SqlStore) -> None:
    queue(store, 2, recipient="x")
    policy = InstitutionPolicy(office_hours=OfficeHours(days="sat", start="09:00", end="10:00"))  # type: ignore[arg-type]
    pacer = Pacer(PacingConfig(rate=100, per_domain_rate=100, institutions={"x": policy}))
    result = claim(store, pacer=pacer)
    assert result.items == []
    assert all(m.attempts == 0 and m.wait_reason and m.wait_reason.startswith("office hours") for m in store.messages())


def test_receipts_are_recorded_once(store: SqlStore) -> None:
    queue(store, 1)
    item = claim(store).items[0]
    store.finish([sent(item)], NOW, worker="w1")
    target = store.targets(envids=[item.envid])[item.envid]
    report = Report(
        raw=b"From: x\r\n\r\nreport",
        sha256=chain.sha256_hex(b"r"),
        source="r.eml",
        entries=[
            ReceiptEntry(part=0, kind="dsn", target=target, matched_by="envid", outcome="delivered", status="2.0.0")
        ],
    )
    assert store.record_reports([report], NOW) == 1
    assert store.record_reports([report], NOW) == 0
    assert store.messages()[0].status.value == "delivered"
    assert store.known_reports([report.sha256]) == {report.sha256}
    assert store.blob(report.sha256) == report.raw
    assert verify(store).ok


def test_copy_between_stores_keeps_the_chain(store_url: str, tmp_path: Path) -> None:
    source = open_store(f"sqlite:///{tmp_path / 'src.db'}")
    queue(source, 5)
    items = claim(source, limit=5).items
    source.finish([sent(i) for i in items], NOW, worker="w1")
    target = open_store(store_url if "postgres" in store_url else f"sqlite:///{tmp_path / 'dst.db'}")
    copied = copy_state(source, target)
    assert copied["messages"] == 5 and copied["events"] == len(source.events())
    assert target.chain_head() == source.chain_head()
    assert verify(target).ok
    with target.enqueue(NOW) as session:  # ids continue after the copied ones
        session.add(new(99))
    assert max(m.id for m in target.messages()) == 6
    source.close()
    target.close()


def test_pacing_buckets_move_to_microseconds_on_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import campaign.store.sql as sql
    from campaign.store.sqlite import SqliteStore

    path = tmp_path / "state.db"
    with monkeypatch.context() as patch:  # a store as the release before 0006 left it
        patch.setattr(sql, "MIGRATIONS", [m for m in sql.MIGRATIONS if m[0] < "0006"])
        old = SqliteStore(path)
        with old.transaction() as tx:
            tx.execute("INSERT INTO pacing (key, tat, tail) VALUES ('global', 1764500000123, 1764500000456)")
        old.close()
    store = SqliteStore(path)
    try:
        with store.reading() as tx:
            row = tx.one("SELECT tat, tail FROM pacing WHERE key = 'global'")
        assert row is not None and (row["tat"], row["tail"]) == (1764500000123000, 1764500000456000)
    finally:
        store.close()


def test_letters_are_read_a_page_at_a_time_as_one_list_would_be(store: SqlStore) -> None:
    # `campaign log --json` of 100,000 letters held them all (about 1 GB); now a page.
    from campaign.store import MessageFilter

    queue(store, 7)
    assert list(store.iter_messages(batch=3)) == store.messages()
    assert list(store.iter_messages(batch=7)) == store.messages()
    one = MessageFilter(recipient="inst-5")
    assert list(store.iter_messages(one, batch=2)) == store.messages(one) and len(store.messages(one)) == 1
    assert list(store.iter_messages(MessageFilter(campaign="nothing"), batch=2)) == []
