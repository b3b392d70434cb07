"""A job's ``schedule`` / ``every`` / ``at`` as an APScheduler 3 trigger, and arithmetic on its slots.

Cron strings are standard crontab (``minute hour day-of-month month day-of-week``; 0 and 7 are Sunday),
not APScheduler's own dialect where 0 is Monday: each field is checked and expanded here, and the days
go to APScheduler by name. When both day fields are restricted (neither starts with ``*``), a day
matching either one fires, as in crontab(5).

    tz = zone("Europe/Paris")
    trigger = cron_trigger("0 9 * * 1-5", tz)           # weekdays at 09:00 Paris time
    next_fire(trigger, datetime(2026, 3, 27, 12, tzinfo=tz))    # Monday 2026-03-30 09:00+02:00
    slots_between(trigger, last_slot, now)              # (how many were missed, the latest of them)
    trigger_for(job, anchor=last_slot)                  # whichever of schedule / every / at is set

Daylight saving: a time that does not exist (02:30 on a spring-forward day) fires once, an hour later
by the wall clock (the same instant as the old offset's 02:30). A time that happens twice (the
fall-back hour) fires once, at its first occurrence, unless the hour field is ``*``: a job that runs
every hour keeps running through the repeated hour.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import tzlocal
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.config import CronJob

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: index = day number
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
            "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_FORMAT = 'it needs 5 fields: minute hour day-of-month month day-of-week, e.g. "0 9 * * 1-5"'


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    allowed: str
    names: tuple[str, ...] = ()  # names[i] stands for low + i
    kind: str = ""  # "month" or "day": what a name is called in errors


_FIELDS = (
    _Field("minute", 0, 59, "0-59"),
    _Field("hour", 0, 23, "0-23"),
    _Field("day-of-month", 1, 31, "1-31"),
    _Field("month", 1, 12, "1-12 or jan-dec", _MONTHS, "month"),
    _Field("day-of-week", 0, 7, "0-7 (0 and 7 are Sunday) or sun-sat", _DAYS, "day"),
)
_DOW = _FIELDS[4]


def zone(name: str | None) -> tzinfo:
    """The IANA zone ``name``, or this machine's local zone when None."""
    if name is None:
        return tzlocal.get_localzone()
    try:
        return zoneinfo.ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise ConfigError(f"Unknown time zone {name!r}; use an IANA name such as Europe/Paris.") from None


class CrontabTrigger(CronTrigger):
    """A CronTrigger that returns real local times and fires a repeated wall-clock time only once."""

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None:
            fire = fire.astimezone(UTC).astimezone(self.timezone)  # 02:30+01:00 in a gap becomes 03:30+02:00
            if not self._repeat(fire):
                return fire
            fire = super().get_next_fire_time(fire, fire)
        return None

    def _repeat(self, fire: datetime) -> bool:
        """``fire`` is the second occurrence of its wall-clock time and the job is not hourly."""
        if fire.fold == 0 or fire.replace(fold=0).utcoffset() == fire.utcoffset():
            return False
        hour = next(f for f in self.fields if f.name == "hour")
        return str(hour) != "*"


class EitherTrigger(OrTrigger):
    """An OrTrigger that picks the earliest fire time by the clock, not by the wall-clock reading."""

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        times = [t.get_next_fire_time(previous_fire_time, now) for t in self.triggers]
        found = [t for t in times if t is not None]
        return min(found, key=_utc) if found else None


def cron_trigger(expr: str, tz: tzinfo) -> BaseTrigger:
    """A standard 5-field crontab line (or ``@daily`` and friends) as a trigger in ``tz``."""
    texts = _split(expr)
    minute, hour, dom, month, dow = (_expand(f, t, expr) for f, t in zip(_FIELDS, texts, strict=True))
    if min(dom) > max(_MONTH_DAYS[m - 1] for m in month):
        raise ConfigError(f"Cron expression {expr!r}: day-of-month {min(dom)} never occurs in the months given.")
    common: dict[str, Any] = {"minute": _render(minute, _FIELDS[0]), "hour": _render(hour, _FIELDS[1]),
                              "month": _render(month, _FIELDS[3]), "timezone": tz}
    days, weekdays = _render(dom, _FIELDS[2]), _render_days(dow)
    if not texts[2].startswith("*") and not texts[4].startswith("*"):
        return EitherTrigger([
            CrontabTrigger(day=days, day_of_week="*", **common),
            CrontabTrigger(day="*", day_of_week=weekdays, **common),
        ])
    return CrontabTrigger(day=days, day_of_week=weekdays, **common)


def _split(expr: str) -> list[str]:
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            names = ", ".join(sorted(_ALIASES))
            raise ConfigError(f"Cron expression {expr!r}: unknown alias; use one of {names} or 5 fields.")
        text = _ALIASES[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        raise ConfigError(
            f"Cron expression {expr!r} has {len(fields)} fields; {_FORMAT} (seconds are not supported).")
    return fields


def _expand(field: _Field, text: str, expr: str) -> set[int]:
    """Every value ``text`` selects (crontab day 7 becomes 0), after checking each part."""
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = _step(field, step_text, expr) if slash else 1
        if base == "*":
            low, high = field.low, (6 if field is _DOW else field.high)
        elif "-" in base:
            first, last = base.split("-", 1)
            low, high = _value(field, first, expr), _value(field, last, expr)
            if field is _DOW and high == 0 and low > 0:
                high = 7  # fri-sun, 5-0: Sunday closes the week
            if low > high:
                raise _wrapping(field, base, low, high, expr)
        else:
            low = _value(field, base, expr)
            high = field.high if slash else low  # 5/15 means 5-59/15
        values.update(range(low, high + 1, step))
    if field is _DOW and 7 in values:
        values = (values - {7}) | {0}
    return values


def _value(field: _Field, token: str, expr: str) -> int:
    word = token.lower()
    if word.isascii() and word.isdigit():
        number = int(word)
        if not field.low <= number <= field.high:
            raise ConfigError(f"Cron expression {expr!r}: {field.name} {number} is out of range; "
                              f"use {field.allowed}.")
        return number
    if word in field.names:
        return field.low + field.names.index(word)
    what = f"a number or a {field.kind} name" if field.kind else "a number"
    shown = f"{token!r} is not {what}" if token else "has an empty part (check the commas and dashes)"
    raise ConfigError(f"Cron expression {expr!r}: {field.name} {shown}; use {field.allowed}.")


def _step(field: _Field, text: str, expr: str) -> int:
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError(f"Cron expression {expr!r}: {field.name} step {text!r} must be a whole number "
                      f"of 1 or more, as in */15.")


def _wrapping(field: _Field, base: str, low: int, high: int, expr: str) -> ConfigError:
    span = [*range(low, field.high + 1), *range(field.low, high + 1)]
    if field is _DOW:
        span = list(dict.fromkeys(d % 7 for d in span if d != 7 or low == 7))
    names = [field.names[v - field.low] if field.names else str(v) for v in span]
    return ConfigError(f"Cron expression {expr!r}: {field.name} range {base} runs backwards; "
                       f"ranges cannot wrap around, list the values instead, e.g. {','.join(names)}.")


def _render(values: set[int], field: _Field) -> str:
    """Values as APScheduler field text: ``*`` or a list like ``0,15,30,45``."""
    return "*" if values == set(range(field.low, field.high + 1)) else ",".join(map(str, sorted(values)))


def _render_days(days: set[int]) -> str:
    """Crontab day numbers as APScheduler day names, so its 0 = Monday numbering never applies."""
    if len(days) == 7:
        return "*"
    return ",".join(_DAYS[d] for d in (1, 2, 3, 4, 5, 6, 0) if d in days)


def interval_trigger(seconds: float, tz: tzinfo, anchor: datetime) -> IntervalTrigger:
    """Fires at ``anchor + k * seconds`` for k >= 1 (the anchor is the last slot or the creation time)."""
    if seconds != seconds:
        raise ConfigError("every: not a number; give a number of seconds.")
    if seconds < 1:
        raise ConfigError(f"every: {seconds:g} s is too short; use at least 1 second.")
    try:
        step = timedelta(seconds=seconds)
        return IntervalTrigger(seconds=seconds, start_date=(_utc(anchor) + step).astimezone(tz), timezone=tz)
    except (OverflowError, ValueError):  # inf, 1e30, or past the year 9999
        raise ConfigError(f"every: {seconds:g} s is too long; use at most 315360000 seconds (10 years).") from None


def parse_at(text: str, tz: tzinfo) -> datetime:
    """An ISO 8601 date and time; without an offset it is read in ``tz``. Returns an aware datetime."""
    raw = text.strip()
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        pass
    else:
        raise ConfigError(f"'at' {text!r} is a date without a time; add the time, e.g. {day.isoformat()}T09:00.")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"'at' {text!r} is not an ISO 8601 date and time; write it like 2026-11-23T17:00 "
                          f"(read in the job's time zone) or 2026-11-23T17:00+01:00.") from None
    try:
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)  # a time in a DST gap moves forward
        _utc(when)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise ConfigError(f"'at' {text!r} is too close to the limits of the calendar.") from None
    return when


def date_trigger(when: datetime) -> DateTrigger:
    """Fires once at ``when`` (aware; a naive one is read in the local zone)."""
    return DateTrigger(run_date=when, timezone=when.tzinfo)


def trigger_for(job: CronJob, anchor: datetime) -> BaseTrigger:
    """The trigger for whichever of ``schedule``, ``every`` or ``at`` the job sets, in its time zone."""
    try:
        tz = zone(job.timezone)
        if job.schedule is not None:
            return cron_trigger(job.schedule, tz)
        if job.every is not None:
            return interval_trigger(job.every, tz, anchor)
        if job.at is not None:
            return date_trigger(parse_at(job.at, tz))
    except ConfigError as exc:
        raise ConfigError(f"Cron job {job.name!r}: {exc}") from exc
    raise ConfigError(f"Cron job {job.name!r} has no schedule; give one of schedule, every or at.")


def next_fire(trigger: BaseTrigger, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after`` (aware), or None when the trigger is done."""
    if isinstance(trigger, IntervalTrigger):
        return _interval_next(trigger, after)
    if isinstance(trigger, DateTrigger):  # its get_next_fire_time ignores `now`
        return trigger.run_date if _utc(trigger.run_date) > _utc(after) else None
    fire = trigger.get_next_fire_time(after, after)  # cron and or: searches from previous + 1 µs
    return fire if fire is None or _utc(fire) > _utc(after) else None


def _interval_next(trigger: IntervalTrigger, after: datetime) -> datetime | None:
    start, step, moment = _utc(trigger.start_date), trigger.interval, _utc(after)
    count = 0 if moment < start else (moment - start) // step + 1
    fire = start + count * step
    if trigger.end_date is not None and fire > _utc(trigger.end_date):
        return None
    return fire.astimezone(trigger.timezone)


def slots_between(trigger: BaseTrigger, after: datetime, until: datetime,
                  limit: int = 100_000) -> tuple[int, datetime | None]:
    """How many fire times fall in (after, until], and the latest of them (None if there are none).

    Interval triggers are counted arithmetically, exactly, whatever the span. Other triggers are
    walked one fire time at a time; the count stops at ``limit`` (so ``limit`` means "at least that
    many"), but the latest slot is still found by searching back from ``until``.
    """
    end = _utc(until)
    if isinstance(trigger, IntervalTrigger):
        first = _interval_next(trigger, after)
        if first is None or _utc(first) > end:
            return 0, None
        last_end = min(end, _utc(trigger.end_date)) if trigger.end_date is not None else end
        count = (last_end - _utc(first)) // trigger.interval + 1
        return count, (_utc(first) + (count - 1) * trigger.interval).astimezone(trigger.timezone)
    latest: datetime | None = None
    count, moment = 0, after
    while count < limit:
        fire = next_fire(trigger, moment)
        if fire is None or _utc(fire) > end:
            return count, latest
        count, latest, moment = count + 1, fire, fire
    return count, _latest_before(trigger, moment, until) or latest


def _latest_before(trigger: BaseTrigger, floor: datetime, until: datetime) -> datetime | None:
    """The last fire time in (floor, until], looking back from ``until`` in doubling windows."""
    window, bottom, end = timedelta(hours=1), _utc(floor), _utc(until)
    while True:
        start = max(bottom, end - window)
        latest, fire = None, next_fire(trigger, start)
        while fire is not None and _utc(fire) <= end:
            latest, fire = fire, next_fire(trigger, fire)
        if latest is not None or start == bottom:
            return latest
        window *= 2


def describe(job: CronJob) -> str:
    """A short text of the job's trigger: ``cron "0 9 * * 1-5" (Europe/Paris)``, ``every 3600 s``."""
    where = job.timezone or "local time"
    if job.schedule is not None:
        return f'cron "{job.schedule}" ({where})'
    if job.every is not None:
        seconds = job.every
        return f"every {int(seconds) if isinstance(seconds, float) and seconds.is_integer() else seconds} s"
    try:
        when = parse_at(job.at or "", zone(job.timezone)).astimezone(zone(job.timezone))
    except ConfigError:
        return f"at {job.at} ({where})"
    return f"at {when.strftime('%Y-%m-%d %H:%M:%S' if when.second else '%Y-%m-%d %H:%M')} ({where})"


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC: aware datetimes sharing a tzinfo compare by wall clock, which DST breaks."""
    return moment.astimezone(UTC)
