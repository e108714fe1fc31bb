"""What each consumer needs from the store, as typed protocols.

The dispatcher sees a :class:`QueueStore`, the receipt importer a :class:`ReceiptSink`, the
log's verifier a :class:`LogReader`: each names only the calls it makes, so a reader of
``campaign.dispatch`` knows exactly which store operations a send depends on, and mypy
checks that ``SqlStore`` provides them (the assignments at the end of this module).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from campaign.pacing import Pacer
    from campaign.store import Claim, Claimed, Outcome, Report, Target, Unsent
    from campaign.store.sql import Gate, PrefixFn


class QueueStore(Protocol):
    """The send loop's view of the store (``campaign.dispatch``)."""

    label: str

    def claim(
        self,
        now_ms: int,
        *,
        worker: str,
        limit: int,
        pacer: Pacer,
        lease_ms: int,
        prefix: PrefixFn,
        campaign: str | None = None,
        ids: Sequence[int] = (),
        recipients: Sequence[str] = (),
        gate: Gate | None = None,
    ) -> Claim: ...

    def finish(self, outcomes: Iterable[Outcome], now_ms: int, *, worker: str) -> int: ...

    def unclaim(self, items: Iterable[Claimed | Unsent], now_ms: int, *, worker: str, reason: str) -> int: ...

    def recover(self, now_ms: int, *, all_sending: bool) -> list[str]: ...

    def fail_expired(self, now_ms: int, max_age_ms: int, campaign: str | None = None) -> list[str]: ...

    def next_due(
        self, campaign: str | None = None, ids: Sequence[int] = (), recipients: Sequence[str] = ()
    ) -> tuple[int, str | None] | None: ...

    def pending_summary(self, campaign: str | None = None) -> tuple[int, int]: ...

    def renew_leases(self, worker: str, now_ms: int, lease_ms: int) -> int: ...

    def worker_started(
        self, worker: str, now_ms: int, *, label: str, campaign: str | None, concurrency: int
    ) -> None: ...

    def worker_beat(self, worker: str, now_ms: int, *, stopped: bool = False) -> None: ...

    def append_event(
        self,
        now_ms: int,
        kind: str,
        *,
        message: str | None = None,
        campaign: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str: ...


class ReceiptSink(Protocol):
    """The receipt importer's view (``campaign.receipts``)."""

    def targets(self, *, envids: Sequence[str] = (), message_ids: Sequence[str] = ()) -> dict[str, Target]: ...

    def known_reports(self, shas: Sequence[str]) -> set[str]: ...

    def record_reports(self, reports: Sequence[Report], now_ms: int) -> int: ...


class LogReader(Protocol):
    """What reading and verifying the chain needs (``campaign.ledger``)."""

    def chain_head(self) -> tuple[int, str]: ...

    def raw_events(self, after_seq: int = 0, limit: int = 5000) -> list[dict[str, Any]]: ...

    def body_rows(self, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]: ...

    def known_key(self) -> bytes | None: ...


if TYPE_CHECKING:
    from campaign.store.sql import SqlStore

    def _sql_store_fits_every_protocol(store: SqlStore) -> None:
        """Never called: mypy checks these assignments."""
        queue: QueueStore = store
        sink: ReceiptSink = store
        reader: LogReader = store
        del queue, sink, reader
