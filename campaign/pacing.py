"""Sending etiquette as pure functions: rates, daily caps and office hours.

Contract:
- Rates are token buckets in GCRA form: a key (``global``, ``domain:un.org``) holds
  a theoretical arrival time ``tat`` in epoch *microseconds* (so rates above 1,000/s
  keep their meaning). A message may go when ``now >= tat - tolerance``; going moves
  ``tat`` to ``max(tat, now) + 1/rate``. Verdicts and parking slots are epoch
  milliseconds, rounded up, like every other time in the store.
  The bucket holds one second of rate, at least one message: with ``rate = 0.2`` no
  two letters to a domain are closer than five seconds.
- A daily cap counts every letter the workspace hands to the server for an
  institution on one day of the institution's own calendar (its ``timezone``,
  UTC when none), whatever the campaign. Counting happens at the attempt, so the
  cap can waste a slot on a retry but can never be exceeded.
- Office hours are wall-clock times in the institution's zone, computed with
  zoneinfo, so they follow DST changes.
- A message that may not go now is not a failure: the verdict says until when and
  why, in words an organiser can read ("office hours: opens Mon 09:00 Europe/Zurich").

Nothing here reads the clock or stores anything: the caller passes ``now`` and a
:class:`PacingState` (database rows in the store, dictionaries in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from campaign.models import OfficeHours, Registry

GLOBAL_KEY = "global"
_DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def dt_to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class InstitutionPolicy:
    """What the registry says about pacing letters to one institution."""

    zone: ZoneInfo = ZoneInfo("UTC")
    max_per_day: int | None = None
    office_hours: OfficeHours | None = None


@dataclass(frozen=True)
class PacingConfig:
    """All limits of one run."""

    rate: float
    per_domain_rate: float
    institutions: dict[str, InstitutionPolicy] = field(default_factory=dict)

    @classmethod
    def from_registry(cls, registry: Registry, *, rate: float, per_domain_rate: float) -> PacingConfig:
        policies = {
            r.id: InstitutionPolicy(zone=r.zone, max_per_day=r.max_per_day, office_hours=r.office_hours)
            for r in registry.recipients
        }
        return cls(rate=rate, per_domain_rate=per_domain_rate, institutions=policies)

    def policy(self, recipient: str) -> InstitutionPolicy:
        return self.institutions.get(recipient, InstitutionPolicy())


@dataclass
class Bucket:
    """A rate key's state, in epoch microseconds: ``tat`` (when the next message is due)
    and ``tail`` (where the next blocked message is parked, so blocked messages spread out)."""

    tat: int = 0
    tail: int = 0


class PacingState(Protocol):
    """Where buckets and daily counts live."""

    def bucket(self, key: str) -> Bucket: ...

    def set_bucket(self, key: str, bucket: Bucket) -> None: ...

    def day_count(self, recipient: str, day: str) -> int: ...

    def add_to_day(self, recipient: str, day: str) -> None: ...


@dataclass
class MemoryState:
    """A PacingState in dictionaries (tests, plans)."""

    buckets: dict[str, Bucket] = field(default_factory=dict)
    days: dict[tuple[str, str], int] = field(default_factory=dict)

    def bucket(self, key: str) -> Bucket:
        return self.buckets.get(key, Bucket())

    def set_bucket(self, key: str, bucket: Bucket) -> None:
        self.buckets[key] = bucket

    def day_count(self, recipient: str, day: str) -> int:
        return self.days.get((recipient, day), 0)

    def add_to_day(self, recipient: str, day: str) -> None:
        self.days[(recipient, day)] = self.days.get((recipient, day), 0) + 1


@dataclass(frozen=True)
class Verdict:
    """Whether a message may go at ``now``; if not, until when, why, and whether the
    wait is short (a rate: waited out within a run) or long (hours, caps)."""

    ok: bool
    until: int | None = None
    reason: str | None = None
    short: bool = False
    key: str | None = None


GO = Verdict(ok=True)


_US = 1000  # microseconds per millisecond


def _interval(rate: float) -> int:
    """Microseconds between two messages at ``rate`` per second."""
    return max(1, round(1000 * _US / rate))


def _ceil_ms(us: int) -> int:
    return -(-us // _US)


def _tolerance(rate: float) -> int:
    capacity = max(1.0, rate)  # one second of rate, at least one message
    return int((capacity - 1) * _interval(rate))


def domain_key(domain: str) -> str:
    return f"domain:{domain}"


def local_day(now_ms: int, zone: ZoneInfo) -> str:
    """The institution's calendar day at ``now`` (``2026-11-28``)."""
    return ms_to_dt(now_ms).astimezone(zone).date().isoformat()


def next_opening(now_ms: int, hours: OfficeHours, zone: ZoneInfo) -> int | None:
    """None when the office is open at ``now``; else the next opening (epoch ms)."""
    local = ms_to_dt(now_ms).astimezone(zone)
    days = hours.weekdays
    for offset in range(0, 8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        start = datetime.combine(day, hours.start, tzinfo=zone)
        end = datetime.combine(day, hours.end, tzinfo=zone)
        if offset == 0 and start <= local < end:
            return None
        if local < start:
            return dt_to_ms(start)
    raise ValueError("office_hours has no days")  # parse_days never yields an empty set


def next_midnight(now_ms: int, zone: ZoneInfo) -> int:
    local = ms_to_dt(now_ms).astimezone(zone)
    return dt_to_ms(datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone))


def describe_moment(ms: int, zone: ZoneInfo) -> str:
    local = ms_to_dt(ms).astimezone(zone)
    return f"{_DAY_NAMES[local.weekday()]} {local:%H:%M} {zone.key}"


class Pacer:
    """Applies a :class:`PacingConfig` to messages, one decision at a time."""

    def __init__(self, config: PacingConfig) -> None:
        self.config = config
        self._global_interval = _interval(config.rate)
        self._global_tolerance = _tolerance(config.rate)
        self._domain_interval = _interval(config.per_domain_rate)
        self._domain_tolerance = _tolerance(config.per_domain_rate)

    def check_global(self, now_ms: int, state: PacingState) -> Verdict:
        """May any message go now, as far as the overall rate is concerned?"""
        bucket = state.bucket(GLOBAL_KEY)
        earliest = bucket.tat - self._global_tolerance
        if now_ms * _US >= earliest:
            return GO
        return Verdict(False, _ceil_ms(earliest), f"rate: {self.config.rate:g}/s overall", True, GLOBAL_KEY)

    def check(self, now_ms: int, recipient: str, domain: str, state: PacingState) -> Verdict:
        """Every limit but the global rate, for one message (consumes nothing)."""
        policy = self.config.policy(recipient)
        if policy.office_hours is not None:
            opening = next_opening(now_ms, policy.office_hours, policy.zone)
            if opening is not None:
                return Verdict(
                    False,
                    opening,
                    f"office hours: opens {describe_moment(opening, policy.zone)}",
                    False,
                    f"office:{recipient}",
                )
        if policy.max_per_day is not None:
            day = local_day(now_ms, policy.zone)
            if state.day_count(recipient, day) >= policy.max_per_day:
                until = next_midnight(now_ms, policy.zone)
                if policy.office_hours is not None:
                    until = next_opening(until, policy.office_hours, policy.zone) or until
                return Verdict(
                    False,
                    until,
                    f"daily cap {policy.max_per_day} reached for {recipient}",
                    False,
                    f"cap:{recipient}",
                )
        key = domain_key(domain)
        bucket = state.bucket(key)
        earliest = bucket.tat - self._domain_tolerance
        if now_ms * _US < earliest:
            return Verdict(False, _ceil_ms(earliest), f"rate: {self.config.per_domain_rate:g}/s to {domain}", True, key)
        return GO

    def consume(self, now_ms: int, recipient: str, domain: str, state: PacingState) -> None:
        """Account for one message handed to the server at ``now``."""
        for key, interval in ((GLOBAL_KEY, self._global_interval), (domain_key(domain), self._domain_interval)):
            bucket = state.bucket(key)
            bucket.tat = max(bucket.tat, now_ms * _US) + interval
            state.set_bucket(key, bucket)
        policy = self.config.policy(recipient)
        if policy.max_per_day is not None:
            state.add_to_day(recipient, local_day(now_ms, policy.zone))

    def park(self, now_ms: int, verdict: Verdict, state: PacingState) -> int:
        """When a message blocked by a rate should be looked at again.

        Blocked messages of one key are spread one interval apart behind the bucket,
        so each wakes to a free slot instead of all waking at once (which would cost
        a database write per waiting message for every message sent).
        """
        assert verdict.until is not None
        if not verdict.short or verdict.key is None or verdict.key == GLOBAL_KEY:
            return verdict.until
        bucket = state.bucket(verdict.key)
        slot = max(verdict.until * _US, bucket.tail, now_ms * _US)
        bucket.tail = slot + self._domain_interval
        state.set_bucket(verdict.key, bucket)
        return _ceil_ms(slot)


READY = "ready (see `campaign plan` for expected times)"


def explain_waits(
    config: PacingConfig,
    ready: list[tuple[str, int, int]],
    now_ms: int,
    day_counts: Callable[[dict[str, str]], dict[str, int]],
) -> list[tuple[str, int, int]]:
    """Why letters no send has looked at yet would wait now: office hours, a daily cap
    reached, or a later ``--at`` time; in the same words a send records. ``ready`` is
    (institution, letters, earliest time); ``day_counts`` reads today's counts for the
    capped institutions. Returns (reason, letters, earliest) grouped by reason."""
    capped = {
        recipient: local_day(now_ms, config.policy(recipient).zone)
        for recipient, _, _ in ready
        if config.policy(recipient).max_per_day is not None
    }
    counts = day_counts(capped) if capped else {}
    grouped: dict[str, tuple[int, int]] = {}
    for recipient, letters, first in ready:
        policy = config.policy(recipient)
        reason, when = READY, first
        if first > now_ms:
            reason = "scheduled"
        elif policy.office_hours is not None and (opening := next_opening(now_ms, policy.office_hours, policy.zone)):
            reason, when = f"office hours: opens {describe_moment(opening, policy.zone)}", opening
        elif policy.max_per_day is not None and counts.get(recipient, 0) >= policy.max_per_day:
            reason = f"daily cap {policy.max_per_day} reached for {recipient}"
            when = next_midnight(now_ms, policy.zone)
        n, earliest = grouped.get(reason, (0, when))
        grouped[reason] = (n + letters, min(earliest, when))
    return [(reason, n, earliest) for reason, (n, earliest) in grouped.items()]
