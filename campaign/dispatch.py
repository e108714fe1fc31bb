"""The async send loop: K reused connections, pacing, retries, progress, clean stops.

Contract:
- Connections open before any message is claimed, so a TLS or authentication
  failure stops the run with every message as it was.
- Workers that are ready ask for work; one claimer serves them in batches (one
  transaction marks a batch ``sending``), one writer records outcomes in batches, one
  keeper renews leases and heartbeats. All store calls run in one dedicated thread, so
  the event loop stays free for SMTP and the store is never used from two threads at once.
- Supervised: every task runs inside one ``asyncio.TaskGroup`` under a guard. A task that
  fails stops the run cleanly (the claimer stops handing out letters, workers finish the
  letters in flight, the writer records their outcomes) and the error is the run's one
  line; nothing waits forever on a task that died.
- A busy store (``StoreBusyError``: locked by another process, a serialization failure,
  a lost connection) is waited out: the call is retried with backoff for up to
  ``store_retry`` (on a shared store, never past the leases on the letters it holds),
  while the progress line says "waiting for the store". Outcomes a server confirmed stay
  in memory until they are committed. If the store stays unavailable, or fails for good,
  the run stops with one line, and the outcomes it could not record are written to the
  recovery journal (``campaign.store.journal``), which the next run applies before it
  recovers anything: a letter the server accepted is never sent again.
- Outcomes: 2xx → sent; 4xx or a failure before the message was fully handed over →
  deferred with exponential backoff and jitter, failed once ``max_age`` has passed;
  5.1.x → failed (fix the registry); 5.7.x → held for a person; other 5xx → failed;
  no reply after the final dot → ``outcome_unknown``, retried as a possible duplicate.
- The run ends when nothing is due now (short rate waits are waited out). With
  ``wait`` it sleeps until the next message is due and ends when every message is
  final. A graceful stop finishes in-flight messages and returns claimed but unsent
  ones; an abort leaves in-flight messages ``sending`` for the next run to recover, and
  writes the claimed ones it never started to the journal, so the next run puts them
  back (not as possible duplicates).
- The clock is injected: ``campaign plan`` runs this same loop on a virtual clock
  against a connection that accepts everything, so the plan is what a send would do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from campaign.errors import CampaignError, StoreError, TransportError
from campaign.models import ascii_address, from_rfc3339
from campaign.pacing import Pacer
from campaign.store import Claimed, Hold, Outcome, Unsent, journal
from campaign.store.protocols import QueueStore
from campaign.store.sql import Gate, PrefixFn, SqlStore
from campaign.transport import Connection, Envelope, SendResult, ServerUnavailableError

T = TypeVar("T")


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """Simulated time: sleeping moves the clock forward at once."""

    def __init__(self, start_ms: int, step_ms: int = 0) -> None:
        self._now = start_ms
        self.step_ms = step_ms

    def now_ms(self) -> int:
        self._now += self.step_ms
        return self._now

    async def sleep(self, seconds: float) -> None:
        self._now += max(0, int(seconds * 1000))
        await asyncio.sleep(0)


@dataclass(frozen=True)
class SendOptions:
    """How one run behaves."""

    worker: str
    return_path: str
    verp: bool = False
    campaign: str | None = None
    ids: tuple[int, ...] = ()
    recipients: tuple[str, ...] = ()
    limit: int | None = None
    concurrency: int = 4
    wait: bool = False
    max_age: timedelta = timedelta(days=3)
    retry_min: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=20)
    short_wait: timedelta = timedelta(minutes=5)
    unavailable_retry: timedelta = timedelta(minutes=1)
    all_sending_crashed: bool = True  # SQLite under the send lock: every ``sending`` row is from a crash
    store_retry: timedelta = timedelta(minutes=5)  # how long a busy store is waited out
    heartbeat: timedelta | None = timedelta(seconds=30)  # None: no keeper (plans, on a virtual clock)
    journal_dir: Path | None = None  # where outcomes the store could not record are saved
    label: str | None = None  # how `campaign workers` names this run (None: not listed, e.g. plans)


@dataclass
class Progress:
    """Counts so far, for progress bars and lines."""

    due: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    held: int = 0
    unknown: int = 0
    in_flight: int = 0
    waiting_until_ms: int | None = None
    waiting_reason: str | None = None
    store_waiting: str | None = None  # "waiting for the store (…)" while a busy store is retried
    last: dict[str, Any] | None = None


@dataclass
class RunReport:
    """How a run ended."""

    progress: Progress
    recovered: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    stopped: CampaignError | None = None
    interrupted: bool = False
    aborted: bool = False
    problems: list[Outcome] = field(default_factory=list)  # failed and held, for the summary
    journaled: list[Outcome] = field(default_factory=list)  # confirmed, not recorded: in the journal
    journal: Path | None = None  # where they are
    journal_error: str | None = None  # the journal could not be written either (then: name them)
    unsent: list[Unsent] = field(default_factory=list)  # claimed, never sent, not put back: in the journal
    journal_applied: int = 0  # outcomes a previous run left in the journal, recorded at the start
    journal_returned: int = 0  # unsent letters a previous run left in the journal, put back at the start
    gated: list[Hold] = field(default_factory=list)  # held before sending (e.g. left the registry)


class StopSignal:
    """First ``request()``: finish in-flight messages and stop. Second: abort now."""

    def __init__(self) -> None:
        self.graceful = asyncio.Event()
        self.abort = asyncio.Event()

    def request(self) -> None:
        if self.graceful.is_set():
            self.abort.set()
        self.graceful.set()


def retry_delay(attempt: int, options: SendOptions, rng: random.Random) -> timedelta:
    """Exponential backoff from retry_min, capped at retry_max, with ±20 % jitter."""
    base = options.retry_min.total_seconds() * (2 ** max(0, attempt - 1))
    base = min(base, options.retry_max.total_seconds())
    return timedelta(seconds=base * rng.uniform(0.8, 1.2))


def envelope_for(item: Claimed, options: SendOptions) -> Envelope:
    mail_from = options.return_path
    if options.verp:
        local, _, domain = mail_from.rpartition("@")
        mail_from = f"{local}+{item.envid}@{domain}"
    rcpt = ascii_address(item.email) or item.email
    return Envelope(mail_from=mail_from, rcpt=rcpt, envid=item.envid, smtputf8=item.smtputf8)


HINTS = {
    "address": "the server refused the address: fix it in recipients.yaml, then `campaign queue LETTER --to ID` "
    "makes a new letter to the new address (`campaign release` would send to the old one again)",
    "policy": "held for a person: the server refused it on policy grounds; check, then `campaign release ID`",
}


class Dispatcher:
    """One run of the send loop (see the module docstring)."""

    def __init__(
        self,
        store: QueueStore,
        connect: Callable[[], Connection],
        pacer: Pacer,
        options: SendOptions,
        *,
        prefix: PrefixFn,
        clock: Clock | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_outcome: Callable[[Outcome, int], None] | None = None,  # (outcome, when it was handed over)
        stop: StopSignal | None = None,
        rng: random.Random | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.connect = connect
        self.pacer = pacer
        self.options = options
        self.prefix = prefix
        self.clock = clock or SystemClock()
        self.on_progress = on_progress or (lambda p: None)
        self.on_outcome = on_outcome
        self.stop = stop or StopSignal()
        self.rng = rng or random.Random()
        self.progress = Progress()
        self.report = RunReport(self.progress)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="campaign-store")
        self._waiters: list[asyncio.Future[Claimed | None]] = []
        # Claimed ahead for workers that will ask next: one transaction serves several letters
        # (at most ``concurrency`` of them). A crash leaves these "sending" too, so after a
        # crash they count as possible duplicates although they were never handed over:
        # conservative, never silent.
        self._buffer: collections.deque[Claimed] = collections.deque()
        self._wakeup = asyncio.Event()
        # Outcomes not yet committed: never dropped until the store has them (or the journal).
        self._outcomes: list[Outcome] = []
        self._outcome_ready = asyncio.Event()
        self._claimed_total = 0
        self._done = False
        self._fatal: CampaignError | None = None
        self._store_broken = False  # the writer gave up: what is left goes to the journal
        self._unsent: list[Unsent] = []  # claimed, never sent, and the store could not take back
        self._writes_idle = asyncio.Event()
        self._writes_idle.set()
        self._landed = asyncio.Event()
        self._landed_count = 0
        self._halt = asyncio.Event()
        self._closing = asyncio.Event()
        self._last_recovery = 0
        self._lease_ms = int(options.lease.total_seconds() * 1000)
        # Shared store: the earliest moment a lease on a letter we hold may run out (renewed
        # by the keeper). Store retries never run past it: another worker could take over.
        self._leases_until_ms: int | None = None
        # Claim ahead only when sending is fast (high rates); at a slow pace it buys nothing.
        self._prefetch = options.concurrency if pacer.config.rate >= 10 * options.concurrency else 0

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One store call on the store's own thread. Anything a store call raises that is
        not a CampaignError (a row of the wrong type in a database changed by hand) becomes
        a StoreError: the run stops with one line, never a hang or a traceback."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._db, lambda: fn(*args, **kwargs))
        except CampaignError:
            raise
        except Exception as err:  # noqa: BLE001 - reported as one line, see the docstring
            name = getattr(fn, "__name__", "store call")
            raise StoreError(
                f"{self.store.label}: {name} failed: {type(err).__name__}: {err}",
                hint="the database may have been changed outside campaign; `campaign log verify` checks it",
            ) from err

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call that waits out a busy store (see the module docstring)."""
        delay = 0.05
        deadline: float | None = None
        try:
            while True:
                try:
                    return await self._call(fn, *args, **kwargs)
                except StoreError as err:
                    if not err.retryable or self.stop.abort.is_set():
                        raise
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.options.store_retry.total_seconds()
                    limit = deadline
                    if self._leases_until_ms is not None:
                        # the leases we hold: leave a margin for the commit itself
                        margin = min(10.0, self._lease_ms / 4000)
                        limit = min(limit, now + (self._leases_until_ms - self.clock.now_ms()) / 1000 - margin)
                    if now >= limit:
                        waited = self.options.store_retry.total_seconds()
                        raise StoreError(
                            f"{err.message}; still unavailable after waiting"
                            + (f" {waited:g}s" if limit == deadline else " as long as our leases allow"),
                            hint="find what holds the database (a long `campaign queue`?) and run `campaign send` "
                            "again; letters the server accepted are not sent twice",
                        ) from err
                    self.progress.store_waiting = f"waiting for the store ({_why_busy(err.message)})"
                    self.on_progress(self.progress)
                    await asyncio.sleep(min(delay, max(0.0, limit - now)))
                    delay = min(delay * 2, 2.0)
        finally:
            if self.progress.store_waiting is not None:
                self.progress.store_waiting = None
                self.on_progress(self.progress)

    # -- entry -------------------------------------------------------------------------

    async def run(self) -> RunReport:
        try:
            await self._start()
            if self._fatal is None:
                async with asyncio.TaskGroup() as group:
                    workers = [
                        group.create_task(self._guard(f"worker {i}", self._worker(i)))
                        for i in range(max(1, self.options.concurrency))
                    ]
                    group.create_task(self._guard("claimer", self._claimer()))
                    group.create_task(self._guard("writer", self._writer()))
                    group.create_task(self._guard("keeper", self._keeper()))
                    group.create_task(self._supervise(workers))
            await self._wind_up()
            self.report.interrupted = self.stop.graceful.is_set()
            self.report.stopped = self._fatal
            return self.report
        finally:
            self._db.shutdown(wait=True)

    async def _start(self) -> None:
        """Before any claim: record what a previous run left in the journal, recover letters
        left ``sending`` by a crash, fail what is past max_age, count what is due."""
        now = self.clock.now_ms()
        opts = self.options
        try:
            if opts.label is not None:
                await self._store(
                    self.store.worker_started,
                    opts.worker,
                    now,
                    label=opts.label,
                    campaign=opts.campaign,
                    concurrency=opts.concurrency,
                )
                await self._store(
                    self.store.append_event,
                    now,
                    "run_started",
                    campaign=opts.campaign,
                    data={"worker": opts.worker, "wait": opts.wait},
                )
            if self.options.journal_dir is not None:
                for path, worker, outcomes, unsent in journal.pending(self.options.journal_dir):
                    await self._store(self.store.finish, outcomes, now, worker=worker)
                    self.report.journal_returned += await self._store(
                        self.store.unclaim, unsent, now, worker=worker, reason="run stopped (from the journal)"
                    )
                    journal.done(path)
                    self.report.journal_applied += len(outcomes)
            self.report.recovered = await self._store(
                self.store.recover, now, all_sending=self.options.all_sending_crashed
            )
            self.report.expired = await self._store(
                self.store.fail_expired, now, int(self.options.max_age.total_seconds() * 1000), self.options.campaign
            )
            pending, _ = await self._store(self.store.pending_summary, self.options.campaign)
        except CampaignError as err:
            self._stop_run(err)
            return
        self.progress.due = pending if self.options.limit is None else min(pending, self.options.limit)
        self.on_progress(self.progress)

    async def _guard(self, name: str, work: Any) -> None:
        """Run one task of the group: a CampaignError stops the run cleanly (the first one is
        the run's error); anything else is a bug, reported the same way, in one line."""
        try:
            await work
        except CampaignError as err:
            self._stop_run(err)
        except Exception as err:  # noqa: BLE001 - the run must end cleanly; the error is reported
            self._stop_run(
                CampaignError(
                    f"internal error in the {name}: {type(err).__name__}: {err}",
                    hint="please report this; letters in flight are recovered by the next `campaign send`",
                )
            )

    async def _supervise(self, workers: list[asyncio.Task[None]]) -> None:
        """End the run when every worker is done (or abort them on a second Ctrl-C); then let
        the claimer, the writer and the keeper finish."""
        aborter: asyncio.Future[Any] = asyncio.ensure_future(self.stop.abort.wait())
        everyone: asyncio.Future[Any] = asyncio.gather(*workers, return_exceptions=True)
        try:
            done, _ = await asyncio.wait([everyone, aborter], return_when=asyncio.FIRST_COMPLETED)
            if aborter in done:
                self.report.aborted = True
                for task in workers:
                    task.cancel()
                await everyone
        finally:
            aborter.cancel()
        self._finish_waiters()
        self._wakeup.set()
        self._closing.set()
        self._outcome_ready.set()

    async def _wind_up(self) -> None:
        """After the group: return unsent claims; save outcomes the store could not take."""
        if self._buffer:
            left, self._buffer = list(self._buffer), collections.deque()
            if self.report.aborted:  # no store call after an abort: the journal puts them back
                self._unsent.extend(Unsent.of(item) for item in left)
            else:
                await self._put_back(left, "run stopped")
        if self._outcomes or self._unsent:
            self._save_journal()
        if self.options.label is not None and not self._store_broken:
            p = self.progress
            try:
                now = self.clock.now_ms()
                await self._store(self.store.worker_beat, self.options.worker, now, stopped=True)
                await self._store(
                    self.store.append_event,
                    now,
                    "run_finished",
                    campaign=self.options.campaign,
                    data={
                        "worker": self.options.worker,
                        "sent": p.sent,
                        "deferred": p.deferred,
                        "failed": p.failed,
                        "held": p.held,
                        "outcome_unknown": p.unknown,
                        "stopped": self._fatal.message if self._fatal else None,
                        "interrupted": self.stop.graceful.is_set() or None,
                        "aborted": self.report.aborted or None,
                    },
                )
            except CampaignError as err:
                self._fatal = self._fatal or err

    def _save_journal(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        unsent, self._unsent = self._unsent, []
        self.report.journaled = outcomes
        self.report.unsent = unsent
        if self.options.journal_dir is None:
            self.report.journal_error = "no recovery journal on this store"
            return
        try:
            self.report.journal = journal.write(self.options.journal_dir, self.options.worker, outcomes, unsent)
        except OSError as err:
            self.report.journal_error = f"{err.filename or self.options.journal_dir}: {err.strerror or err}"

    # -- claiming ----------------------------------------------------------------------

    async def _next_item(self) -> Claimed | None:
        if self._done or self.stop.graceful.is_set() or self._fatal is not None:
            return None
        if self._buffer:
            return self._buffer.popleft()
        future: asyncio.Future[Claimed | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._wakeup.set()
        return await future

    async def _recover_expired(self, now: int) -> None:
        """Shared store: pick up letters whose worker died (its leases expired)."""
        if self.options.all_sending_crashed:
            return
        if now - self._last_recovery < 10_000:
            return
        self._last_recovery = now
        recovered = await self._store(self.store.recover, now, all_sending=False)
        self.report.recovered.extend(recovered)

    def _finish_waiters(self) -> None:
        self._done = True
        for future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters.clear()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on a stop request or a fatal error."""
        if seconds <= 0:
            return
        await self._first(self.clock.sleep(seconds), self.stop.graceful.wait(), self._halt.wait())

    @staticmethod
    async def _first(*waits: Any) -> None:
        """Wait until the first of ``waits`` is done; cancel the others."""
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    def _stop_run(self, error: CampaignError) -> None:
        """A problem that stops the whole run (first one wins): no more letters are handed
        out; letters in flight finish and their outcomes are recorded."""
        self._fatal = self._fatal or error
        self._halt.set()
        self._wakeup.set()
        self._finish_waiters()

    async def _until_landed(self, seen: int) -> None:
        """Wait until an outcome is recorded after ``seen`` (or the run halts)."""
        while self._landed_count == seen and not self._halt.is_set():
            self._landed.clear()
            await self._first(self._landed.wait(), self._halt.wait())

    async def _claimer(self) -> None:
        opts = self.options
        while not self._done:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._waiters:
                if self.stop.graceful.is_set() or self._fatal is not None:
                    self._finish_waiters()
                    return
                limit = len(self._waiters) + self._prefetch
                if opts.limit is not None:
                    limit = min(limit, opts.limit - self._claimed_total)
                    if limit <= 0:
                        self._finish_waiters()
                        return
                now = self.clock.now_ms()
                await self._recover_expired(now)
                claim = await self._store(
                    self.store.claim,
                    now,
                    worker=opts.worker,
                    limit=limit,
                    pacer=self.pacer,
                    lease_ms=self._lease_ms,
                    prefix=self.prefix,
                    campaign=opts.campaign,
                    ids=opts.ids,
                    recipients=opts.recipients,
                    gate=self.gate,
                )
                for hold in claim.held:
                    self.progress.held += 1
                    self.report.gated.append(hold)
                if claim.items:
                    self._claimed_total += len(claim.items)
                    if not opts.all_sending_crashed and self._leases_until_ms is None:
                        self._leases_until_ms = now + self._lease_ms
                    self.progress.waiting_until_ms = None
                    self.progress.waiting_reason = None
                    for item in claim.items:
                        if self._waiters:
                            self._waiters.pop(0).set_result(item)
                        else:
                            self._buffer.append(item)
                    continue
                if claim.wait_until_ms is not None:  # the overall rate: always a short wait
                    await self._sleep((claim.wait_until_ms - now) / 1000)
                    continue
                if not await self._wait_for_due(now):
                    self._finish_waiters()
                    return

    async def _wait_for_due(self, now: int) -> bool:
        """Nothing is due now: sleep until something is, or say the run is over."""
        opts = self.options
        seen = self._landed_count
        # Outcomes not yet written may turn into retries: let the writer catch up first.
        await self._first(self._writes_idle.wait(), self._halt.wait())
        if self._halt.is_set():
            return False
        nxt = await self._store(self.store.next_due, opts.campaign, opts.ids, opts.recipients)
        if self._landed_count != seen:
            return True  # something finished meanwhile: look again
        in_flight = self.progress.in_flight
        short = False
        if nxt is not None:
            due_ms, reason = nxt
            if due_ms <= now:
                return True
            short = (
                bool(reason)
                and str(reason).startswith("rate:")
                and (due_ms - now <= opts.short_wait.total_seconds() * 1000)
            )
        if nxt is None or (not short and not opts.wait):
            if in_flight > 0:
                await self._until_landed(seen)
                return not self._halt.is_set()
            return False
        self.progress.waiting_until_ms = due_ms
        self.progress.waiting_reason = reason or "retry"
        self.on_progress(self.progress)
        if not short:
            expired = await self._store(
                self.store.fail_expired, now, int(opts.max_age.total_seconds() * 1000), opts.campaign
            )
            self.report.expired.extend(expired)
            self.progress.failed += len(expired)
        await self._sleep((due_ms - now) / 1000)
        return not self.stop.graceful.is_set() and not self._halt.is_set()

    # -- sending -----------------------------------------------------------------------

    async def _open(self) -> Connection | None:
        """A ready connection, or None when the run must stop."""
        while not self.stop.graceful.is_set() and self._fatal is None and not self._done:
            conn = self.connect()
            # A server that breaks the protocol while the connection is idle (a stray line
            # after a message's 250) stops the run at once, never a silent reconnect.
            conn.watch(self._stop_run)
            try:
                await conn.open()
                return conn
            except ServerUnavailableError as err:
                if not self.options.wait:
                    self._stop_run(err)
                    return None
                self.progress.waiting_reason = f"server unavailable: {err.message}"
                self.progress.waiting_until_ms = self.clock.now_ms() + int(
                    self.options.unavailable_retry.total_seconds() * 1000
                )
                self.on_progress(self.progress)
                await self._sleep(self.options.unavailable_retry.total_seconds())
            except TransportError as err:
                self._stop_run(err)
                return None
        return None

    async def _put_back(self, items: list[Claimed], reason: str) -> None:
        """Nothing of ``items`` was sent: they return to their previous state (``not_sent``).
        If the store cannot take them back (or has failed: it is not waited out), they go
        to the journal, so the next run puts them back (not possible duplicates)."""
        try:
            if self._store_broken:
                raise self._fatal or StoreError("the store failed")
            await self._store(self.store.unclaim, items, self.clock.now_ms(), worker=self.options.worker, reason=reason)
        except CampaignError as err:
            self._unsent.extend(Unsent.of(item) for item in items)
            self._stop_run(err)

    async def _worker(self, index: int) -> None:
        conn: Connection | None = None
        try:
            while True:
                if conn is None or not conn.connected:
                    conn = await self._open()
                    if conn is None:
                        return
                item = await self._next_item()
                if item is None:
                    return
                self.progress.in_flight += 1
                try:
                    result = await conn.send(envelope_for(item, self.options), item.wire)
                    if result.kind == "reconnect":
                        # Dropped while idle: nothing was sent. Reconnect and try once more.
                        conn = await self._open()
                        if conn is None:
                            await self._put_back([item], self._fatal.message if self._fatal else "run stopped")
                            return
                        result = await conn.send(envelope_for(item, self.options), item.wire)
                        if result.kind == "reconnect":
                            result = SendResult(kind="temporary", phase="mail", reply=result.reply)
                    if result.kind == "sender":
                        self._stop_run(
                            TransportError(
                                f"the server refused our sender {self.options.return_path}: {result.reply}",
                                hint="check [sender] email, [receipts] return_path and the account's rights; "
                                "no message was sent",
                            )
                        )
                        await self._put_back([item], result.reply or "sender refused")
                        return
                    if result.kind == "protocol":
                        # A broken or hostile server: stop, rather than spend an attempt per letter.
                        self._stop_run(
                            TransportError(
                                result.reply or "the server broke the SMTP protocol",
                                hint="check [smtp] host and port, or ask the server's operator; "
                                "the letter was kept for the next run",
                            )
                        )
                        if result.phase != "end":  # nothing of the message was sent: put it back
                            await self._put_back([item], result.reply or "protocol violation")
                            return
                        self._record(self._outcome(item, result), item)
                        return
                    self._record(self._outcome(item, result), item)
                finally:
                    self.progress.in_flight -= 1
        finally:
            if conn is not None:
                if self.stop.abort.is_set():
                    conn.abort()  # no QUIT: a reply still on its way would be read as QUIT's
                else:
                    with contextlib.suppress(Exception):
                        await conn.close()

    def _outcome(self, item: Claimed, result: SendResult) -> Outcome:
        now = self.clock.now_ms()
        data: dict[str, Any] = {"phase": result.phase}
        if result.kind == "sent":
            data["dsn"] = result.dsn_requested
            if not result.dsn_requested:
                data["receipts"] = "not requested: the server does not offer DSN"
        outcome = Outcome(
            id=item.id,
            message_id=item.message_id,
            campaign=item.campaign,
            status="sent",
            event="sent",
            attempt=item.attempt,
            code=result.code,
            enhanced=result.enhanced,
            reply=result.reply,
            remote_id=result.remote_id,
            possible_duplicate=item.possible_duplicate,
            data=data,
        )
        if result.kind == "sent":
            return outcome
        if result.kind in ("temporary", "unknown", "protocol"):
            # A protocol violation after the final dot may have left is as unknown as silence.
            unknown = result.kind == "unknown" or (result.kind == "protocol" and result.phase == "end")
            first = from_rfc3339(item.first_attempt_at)
            age_ms = now - int(first.timestamp() * 1000)
            duplicate = item.possible_duplicate or unknown
            event = "outcome_unknown" if unknown else "deferred"
            if age_ms >= self.options.max_age.total_seconds() * 1000:
                data["reason"] = "max_age reached: gave up retrying"
                final = "failed" if event == "deferred" else event
                return replace(outcome, status="failed", event=final, possible_duplicate=duplicate)
            delay = retry_delay(item.attempt, self.options, self.rng)
            if unknown:
                data["note"] = "no final reply: the server may have accepted it; retrying, possible duplicate"
            return replace(
                outcome,
                status="deferred",
                event=event,
                next_attempt_ms=now + int(delay.total_seconds() * 1000),
                possible_duplicate=duplicate,
            )
        if result.kind == "policy":
            data["hint"] = HINTS["policy"]
            return replace(outcome, status="held", event="held")
        if result.kind == "address":
            data["hint"] = HINTS["address"]
        return replace(outcome, status="failed", event="failed")

    # -- recording ---------------------------------------------------------------------

    def _record(self, outcome: Outcome, item: Claimed) -> None:
        p = self.progress
        if outcome.event == "outcome_unknown":
            p.unknown += 1
        if outcome.status == "sent":
            p.sent += 1
        elif outcome.status == "deferred":
            p.deferred += 1
        elif outcome.status == "held":
            p.held += 1
        else:
            p.failed += 1
        p.last = {
            "message_id": outcome.message_id,
            "status": outcome.status,
            "reply": outcome.reply,
            "event": outcome.event,
            "id": outcome.id,
            "recipient": item.recipient,
            "email": item.email,
        }
        if outcome.status in ("failed", "held"):
            self.report.problems.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome, item.claimed_ms)
        self._outcomes.append(outcome)
        self._writes_idle.clear()
        self._outcome_ready.set()
        self._landed_count += 1
        self._landed.set()
        self.on_progress(p)

    async def _writer(self) -> None:
        """Commit outcomes in batches (one fsync for several letters), waiting out a busy
        store. If the store fails for good, stop the run and keep the outcomes for the
        journal; the writer never drops an outcome a server confirmed."""
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            if self._outcomes and len(self._outcomes) < self.options.concurrency and not self._closing.is_set():
                # Let a few more outcomes arrive so one commit (one fsync) records them all; a
                # few milliseconds more in the crash window, named as such like any other.
                await asyncio.sleep(0.003)
            while self._outcomes and not self._store_broken:
                batch = list(self._outcomes)
                try:
                    await self._store(self.store.finish, batch, self.clock.now_ms(), worker=self.options.worker)
                except CampaignError as err:
                    self._store_broken = True
                    self._stop_run(err)
                    break
                del self._outcomes[: len(batch)]
            if not self._outcomes or self._store_broken:
                self._writes_idle.set()
            if self._closing.is_set() and (not self._outcomes or self._store_broken):
                return

    async def _keeper(self) -> None:
        """Heartbeat (``campaign workers`` shows a live sender, idle or not) and, on a shared
        store, renew the leases on every letter this worker holds, every third of a lease:
        a live worker keeps its letters however long a send takes."""
        beat = self.options.heartbeat
        if beat is None:
            return
        interval = beat.total_seconds()
        if not self.options.all_sending_crashed:
            interval = min(interval, self._lease_ms / 3000)
        while not self._closing.is_set():
            await self._first(asyncio.sleep(interval), self._closing.wait())
            if self._closing.is_set():
                return
            now = self.clock.now_ms()
            try:
                if self.options.all_sending_crashed:
                    await self._call(self.store.worker_beat, self.options.worker, now)
                else:
                    await self._call(self.store.renew_leases, self.options.worker, now, self._lease_ms)
                    self._leases_until_ms = now + self._lease_ms
            except StoreError as err:
                if not err.retryable:
                    raise
                # busy: the next beat tries again; the writer's retries respect the old leases


def _why_busy(message: str) -> str:
    if "locked" in message:
        return "locked by another process"
    if "connection" in message:
        return "reconnecting"
    return "busy"


async def send_direct(connect: Callable[[], Connection], items: list[tuple[Envelope, bytes]]) -> list[SendResult]:
    """Send a few messages over one connection, outside the queue (test copies): no claim,
    no pacing, no retry. Raises TransportError when the server cannot be used at all."""
    conn = connect()
    broken: list[TransportError] = []
    conn.watch(broken.append)
    await conn.open()
    results = []
    try:
        for envelope, wire in items:
            if broken:
                raise broken[0]
            if not conn.connected:
                await conn.open()
            results.append(await conn.send(envelope, wire))
    finally:
        await conn.close()
    return results


def simulate(
    snapshot: SqlStore, pacer: Pacer, options: SendOptions, start_ms: int
) -> tuple[dict[int, tuple[int, str]], set[str]]:
    """`campaign plan`: this send loop on a private copy of the queue, on a simulated clock,
    against a server that accepts everything. Returns {message row id: (when it would be
    handed over, outcome)} and the Message-IDs that would fail for age.

    The copy is private: no journal, no heartbeat, and every letter left ``sending`` counts
    as a crash, as the next real run would treat it.
    """
    import gc

    from campaign.transport import NullConnection

    times: dict[int, tuple[int, str]] = {}

    def record(outcome: Outcome, at: int) -> None:
        times[outcome.id] = (at, outcome.status)

    options = replace(options, heartbeat=None, label=None, journal_dir=None, all_sending_crashed=True)
    dispatcher = Dispatcher(
        snapshot,
        NullConnection,
        pacer,
        options,
        prefix=lambda row, body, at: b"",
        clock=VirtualClock(start_ms),
        on_outcome=record,
    )
    gc.freeze()  # the plan's many long-lived objects need no cycle collection (it grew quadratic)
    try:
        report = asyncio.run(dispatcher.run())
    finally:
        gc.unfreeze()
    return times, set(report.expired)
