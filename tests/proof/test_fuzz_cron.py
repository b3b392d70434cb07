"""Hostile cron expressions and 'at' times: a trigger or a ConfigError, and valid triggers keep their word."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cron.expr import cron_trigger, next_fire, parse_at, zone
from agent.errors import ConfigError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Apia"]

atoms = st.one_of(
    st.integers(-3, 70).map(str), st.just("*"), st.sampled_from(["sun", "MON", "fri", "sat", "jan", "Dec", "feb"]),
    st.sampled_from(["", "?", "L", "W", "#", "x", "٣", "²", "99999999999999999999", "-", "/", ",", "\x00", "\t"]),
)
parts = st.builds(lambda a, sep, b: f"{a}{sep}{b}", atoms, st.sampled_from(["", "-", "/", ",", "-/", "/-"]), atoms)
fields = st.lists(parts, min_size=1, max_size=3).map(",".join)
expressions = st.one_of(
    st.lists(fields, min_size=5, max_size=5).map(" ".join),
    st.lists(fields, min_size=0, max_size=7).map(" ".join),
    st.sampled_from(["@daily", "@HOURLY", "@reboot", "@", "@yearly extra"]),
    st.text(max_size=30),
)


def _trigger_or_error(expr: str, tz_name: str) -> object:
    try:
        return cron_trigger(expr, zone(tz_name))
    except ConfigError as exc:
        assert str(exc).strip()
        return None


@FAST
@given(expressions, st.sampled_from(ZONES),
       st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_random_expressions(expr: str, tz_name: str, after: datetime) -> None:
    trigger = _trigger_or_error(expr, tz_name)
    if trigger is None:
        return
    fire = next_fire(trigger, after)  # type: ignore[arg-type]
    assert fire is not None, f"{expr!r} in {tz_name} never fires after {after}"
    assert fire > after


def _valid_field(low: int, high: int) -> st.SearchStrategy[str]:
    one = st.integers(low, high)
    return st.one_of(st.just("*"), one.map(str), st.integers(1, high + 1).map(lambda n: f"*/{n}"),
                     st.tuples(one, one).map(sorted).map(lambda p: f"{p[0]}-{p[1]}"),
                     st.lists(one, min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))))


valid = st.tuples(_valid_field(0, 59), _valid_field(0, 23), _valid_field(1, 28), _valid_field(1, 12),
                  _valid_field(0, 7)).map(" ".join)


@FAST
@given(valid, st.sampled_from(ZONES),
       st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_valid_expressions_fire_strictly_later(expr: str, tz_name: str, after: datetime) -> None:
    trigger = cron_trigger(expr, zone(tz_name))
    fire = next_fire(trigger, after)
    assert fire is not None and fire > after
    again = next_fire(trigger, fire)
    assert again is not None and again > fire


@FAST
@given(st.integers(0, 7), st.sampled_from(ZONES),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       st.integers(0, 23), st.integers(0, 59))
def test_weekday_numbers_are_crontabs(dow: int, tz_name: str, after: datetime, hour: int, minute: int) -> None:
    tz = zone(tz_name)
    fire = next_fire(cron_trigger(f"{minute} {hour} * * {dow}", tz), after)
    assert fire is not None and fire > after
    local = fire.astimezone(tz)
    assert local.isoweekday() % 7 == dow % 7  # 0 and 7 are Sunday; isoweekday: Monday 1 ... Sunday 7
    named = next_fire(cron_trigger(f"{minute} {hour} * * {['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'][dow]}",
                                   tz), after)
    assert named == fire


@FAST
@given(st.text(max_size=40) | st.sampled_from(["0001-01-01T00:00", "9999-12-31T23:59", "9999-12-31T23:59-12:00",
                                                "0001-01-01T00:00+14:00", "2026-03-29T02:30", "2026-13-01T00:00",
                                                "2026-01-01", "T09:00", "2026-01-01T09:00Z"]),
       st.sampled_from(ZONES))
def test_random_at(text: str, tz_name: str) -> None:
    try:
        when = parse_at(text, zone(tz_name))
    except ConfigError as exc:
        assert str(exc).strip()
        return
    assert when.tzinfo is not None
    when.astimezone(UTC)


@FAST
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)), st.sampled_from(ZONES))
def test_at_over_the_whole_calendar(moment: datetime, tz_name: str) -> None:
    try:
        parse_at(moment.isoformat(), zone(tz_name)).astimezone(UTC)
    except ConfigError:
        pass
