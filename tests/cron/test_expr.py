"""Cron expressions, intervals and ``at`` times as triggers: pure trigger arithmetic, no scheduler, no waiting."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import tzlocal
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import CronJob
from agent.cron.expr import (
    cron_trigger,
    date_trigger,
    describe,
    interval_trigger,
    next_fire,
    parse_at,
    slots_between,
    trigger_for,
    zone,
)
from agent.errors import ConfigError

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
SATURDAY = datetime(2026, 1, 3, tzinfo=UTC)  # 2026-01-01 is a Thursday
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)  # datetime.weekday()


def u(moment: datetime) -> datetime:
    """In UTC: aware datetimes sharing a ZoneInfo compare (and add) by wall clock, which DST breaks."""
    return moment.astimezone(UTC)


def fires(trigger: BaseTrigger, after: datetime, until: datetime) -> list[datetime]:
    out: list[datetime] = []
    fire = next_fire(trigger, after)
    while fire is not None and u(fire) <= u(until):
        assert u(fire) > u(after) and (not out or u(fire) > u(out[-1]))
        out.append(fire)
        fire = next_fire(trigger, fire)
    return out


def weekdays(expr: str) -> set[int]:
    return {f.weekday() for f in fires(cron_trigger(expr, UTC), SATURDAY, SATURDAY + timedelta(days=14))}


def cron_error(expr: str) -> str:
    with pytest.raises(ConfigError) as info:
        cron_trigger(expr, UTC)
    return str(info.value)


# --- day of week: 0 and 7 are Sunday, not APScheduler's 0 = Monday ---------------------------------

def test_weekdays_fire_monday_to_friday_never_on_the_weekend() -> None:
    week = fires(cron_trigger("0 9 * * 1-5", UTC), SATURDAY, SATURDAY + timedelta(days=7))
    assert [f.weekday() for f in week] == [MON, TUE, WED, THU, FRI]
    assert [f.day for f in week] == [5, 6, 7, 8, 9]
    assert all((f.hour, f.minute) == (9, 0) for f in week)


@pytest.mark.parametrize("dow", ["0", "7", "sun", "SUN", "Sun"])
def test_sunday_is_0_7_and_sun(dow: str) -> None:
    sundays = fires(cron_trigger(f"0 9 * * {dow}", UTC), SATURDAY, SATURDAY + timedelta(days=28))
    assert [f.day for f in sundays] == [4, 11, 18, 25]
    assert {f.weekday() for f in sundays} == {SUN}


@pytest.mark.parametrize(("dow", "expected"), [
    ("*/2", {SUN, TUE, THU, SAT}),
    ("mon-fri", {MON, TUE, WED, THU, FRI}),
    ("fri-sun", {FRI, SAT, SUN}),
    ("5-7", {FRI, SAT, SUN}),
    ("5-0", {FRI, SAT, SUN}),
    ("1,3,sat", {MON, WED, SAT}),
    ("1-5/2", {MON, WED, FRI}),
    ("sun-sat", set(range(7))),
    ("0-7", set(range(7))),
    ("*", set(range(7))),
    ("6", {SAT}),
])
def test_day_of_week_lists_ranges_and_steps(dow: str, expected: set[int]) -> None:
    assert weekdays(f"0 9 * * {dow}") == expected


def test_days_reach_apscheduler_by_name() -> None:
    assert "day_of_week='mon,tue,wed,thu,fri'" in str(cron_trigger("0 9 * * 1-5", UTC))


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    april = fires(cron_trigger("0 9 13 * 5", UTC), datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    assert [(f.day, f.weekday()) for f in april] == [(3, FRI), (10, FRI), (13, MON), (17, FRI), (24, FRI)]


def test_a_star_day_field_keeps_the_other_one_alone() -> None:
    april = fires(cron_trigger("0 9 13 * *", UTC), datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))
    assert [(f.month, f.day) for f in april] == [(4, 13), (5, 13)]


def test_months_minutes_and_hours() -> None:
    got = fires(cron_trigger("*/20 8-9 1 jan,JUL *", UTC), datetime(2026, 1, 1, tzinfo=UTC),
                datetime(2026, 12, 31, tzinfo=UTC))
    assert [(f.month, f.hour, f.minute) for f in got] == [
        (m, h, mi) for m in (1, 7) for h in (8, 9) for mi in (0, 20, 40)]


@pytest.mark.parametrize(("alias", "first"), [
    ("@hourly", datetime(2026, 1, 3, 1, tzinfo=UTC)),
    ("@daily", datetime(2026, 1, 4, tzinfo=UTC)),
    ("@midnight", datetime(2026, 1, 4, tzinfo=UTC)),
    ("@DAILY", datetime(2026, 1, 4, tzinfo=UTC)),
    ("@weekly", datetime(2026, 1, 4, tzinfo=UTC)),  # Sunday 00:00
    ("@monthly", datetime(2026, 2, 1, tzinfo=UTC)),
    ("@yearly", datetime(2027, 1, 1, tzinfo=UTC)),
    ("@annually", datetime(2027, 1, 1, tzinfo=UTC)),
])
def test_aliases(alias: str, first: datetime) -> None:
    assert next_fire(cron_trigger(alias, UTC), SATURDAY) == first


def test_weekly_is_sunday_every_week() -> None:
    assert weekdays("@weekly") == {SUN}


def test_cron_triggers_survive_pickling() -> None:  # APScheduler's persistent job stores pickle triggers
    trigger = pickle.loads(pickle.dumps(cron_trigger("0 9 13 * 5", PARIS)))
    assert next_fire(trigger, datetime(2026, 4, 11, tzinfo=PARIS)) == datetime(2026, 4, 13, 9, tzinfo=PARIS)


# --- errors name the expression, the field and what is allowed ---------------------------------------

@pytest.mark.parametrize(("expr", "message"), [
    ("0 9 * * 8", "Cron expression '0 9 * * 8': day-of-week 8 is out of range; use 0-7 (0 and 7 are Sunday) "
                  "or sun-sat."),
    ("60 9 * * *", "Cron expression '60 9 * * *': minute 60 is out of range; use 0-59."),
    ("0 24 * * *", "Cron expression '0 24 * * *': hour 24 is out of range; use 0-23."),
    ("0 9 0 * *", "Cron expression '0 9 0 * *': day-of-month 0 is out of range; use 1-31."),
    ("0 9 32 * *", "Cron expression '0 9 32 * *': day-of-month 32 is out of range; use 1-31."),
    ("0 9 * 13 *", "Cron expression '0 9 * 13 *': month 13 is out of range; use 1-12 or jan-dec."),
    ("0 9 * * funday", "Cron expression '0 9 * * funday': day-of-week 'funday' is not a number or a day name; "
                       "use 0-7 (0 and 7 are Sunday) or sun-sat."),
    ("0 9 * * monday", "Cron expression '0 9 * * monday': day-of-week 'monday' is not a number or a day name; "
                       "use 0-7 (0 and 7 are Sunday) or sun-sat."),
    ("0 9 * foo *", "Cron expression '0 9 * foo *': month 'foo' is not a number or a month name; "
                    "use 1-12 or jan-dec."),
    ("0 nine * * *", "Cron expression '0 nine * * *': hour 'nine' is not a number; use 0-23."),
    ("0 -1 * * *", "Cron expression '0 -1 * * *': hour has an empty part (check the commas and dashes); use 0-23."),
    ("0 9 1,,2 * *", "Cron expression '0 9 1,,2 * *': day-of-month has an empty part (check the commas and dashes); "
                     "use 1-31."),
    ("*/0 * * * *", "Cron expression '*/0 * * * *': minute step '0' must be a whole number of 1 or more, as in */15."),
    ("*/x * * * *", "Cron expression '*/x * * * *': minute step 'x' must be a whole number of 1 or more, as in */15."),
    ("0 9 * * sat-mon", "Cron expression '0 9 * * sat-mon': day-of-week range sat-mon runs backwards; ranges cannot "
                        "wrap around, list the values instead, e.g. sat,sun,mon."),
    ("0 9 * * 6-1", "Cron expression '0 9 * * 6-1': day-of-week range 6-1 runs backwards; ranges cannot "
                    "wrap around, list the values instead, e.g. sat,sun,mon."),
    ("0 22-2 * * *", "Cron expression '0 22-2 * * *': hour range 22-2 runs backwards; ranges cannot "
                     "wrap around, list the values instead, e.g. 22,23,0,1,2."),
    ("0 9 * nov-feb *", "Cron expression '0 9 * nov-feb *': month range nov-feb runs backwards; ranges cannot "
                        "wrap around, list the values instead, e.g. nov,dec,jan,feb."),
    ("0 9 31 2 *", "Cron expression '0 9 31 2 *': day-of-month 31 never occurs in the months given."),
    ("@reboot", "Cron expression '@reboot': unknown alias; use one of @annually, @daily, @hourly, @midnight, "
                "@monthly, @weekly, @yearly or 5 fields."),
])
def test_bad_fields_say_what_is_allowed(expr: str, message: str) -> None:
    assert cron_error(expr) == message


@pytest.mark.parametrize("expr", ["0 9 * *", "0 0 9 * * 1-5", "", "daily"])
def test_wrong_field_count_shows_the_format(expr: str) -> None:
    message = cron_error(expr)
    assert message.startswith(f"Cron expression {expr!r} has {len(expr.split())} fields;")
    assert 'it needs 5 fields: minute hour day-of-month month day-of-week, e.g. "0 9 * * 1-5"' in message
    assert "(seconds are not supported)" in message


def test_unknown_time_zone() -> None:
    for name in ("Europe/Pariss", "Europe", "", "../etc/passwd"):
        with pytest.raises(ConfigError) as info:
            zone(name)
        assert str(info.value) == f"Unknown time zone {name!r}; use an IANA name such as Europe/Paris."


def test_zone_names_and_local() -> None:
    assert zone("Europe/Paris") == PARIS
    assert zone(None) == tzlocal.get_localzone()


# --- daylight saving and time zones ----------------------------------------------------------------

def test_spring_forward_time_that_does_not_exist_fires_once_an_hour_later() -> None:
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist. APScheduler 3.11 gives
    # 02:30 with the old offset (+01:00), i.e. 01:30 UTC = 03:30 CEST; we return it as 03:30+02:00.
    got = fires(cron_trigger("30 2 * * *", PARIS), datetime(2026, 3, 28, tzinfo=PARIS), datetime(2026, 3, 31, tzinfo=PARIS))
    assert [f.astimezone(UTC) for f in got] == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    on_the_day = [f for f in got if f.date().day == 29]
    assert len(on_the_day) == 1 and (on_the_day[0].hour, on_the_day[0].minute) == (3, 30)
    assert on_the_day[0].utcoffset() == timedelta(hours=2)


def test_hourly_on_spring_forward_skips_the_missing_hour_without_doubling() -> None:
    day = fires(cron_trigger("30 * * * *", PARIS), datetime(2026, 3, 29, tzinfo=PARIS), datetime(2026, 3, 30, tzinfo=PARIS))
    assert len(day) == 23
    assert [f.hour for f in day[:3]] == [0, 1, 3]


def test_fall_back_repeated_time_fires_once() -> None:
    # 2026-11-01 in New York: 02:00 EDT goes back to 01:00 EST, so 01:30 happens twice.
    # Plain APScheduler 3.11 fires at both; ours fires at the first (EDT) one only.
    after, until = datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), datetime(2026, 11, 2, 12, tzinfo=NEW_YORK)
    plain = CronTrigger(minute="30", hour="1", timezone=NEW_YORK)
    assert len(fires(plain, after, until)) == 3  # the upstream behaviour this module corrects
    got = fires(cron_trigger("30 1 * * *", NEW_YORK), after, until)
    assert [f.astimezone(UTC) for f in got] == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]
    assert slots_between(cron_trigger("30 1 * * *", NEW_YORK), after, until)[0] == 2


def test_hourly_job_runs_through_the_repeated_hour() -> None:
    day = fires(cron_trigger("30 * * * *", NEW_YORK), datetime(2026, 11, 1, tzinfo=NEW_YORK),
                datetime(2026, 11, 2, tzinfo=NEW_YORK))
    assert len(day) == 25
    assert len({f.astimezone(UTC) for f in day}) == 25


def test_daily_job_stays_at_nine_local_across_the_change() -> None:
    got = fires(cron_trigger("0 9 * * *", PARIS), datetime(2026, 3, 27, 12, tzinfo=PARIS),
                datetime(2026, 3, 31, 12, tzinfo=PARIS))
    assert [(f.day, f.hour, f.minute) for f in got] == [(28, 9, 0), (29, 9, 0), (30, 9, 0), (31, 9, 0)]
    assert [f.astimezone(UTC).hour for f in got] == [8, 7, 7, 7]


def test_same_expression_in_two_zones_is_two_instants() -> None:
    after = datetime(2026, 6, 1, 1, tzinfo=UTC)
    tokyo, utc = next_fire(cron_trigger("0 9 * * *", TOKYO), after), next_fire(cron_trigger("0 9 * * *", UTC), after)
    assert tokyo == datetime(2026, 6, 2, 0, tzinfo=UTC)
    assert utc == datetime(2026, 6, 1, 9, tzinfo=UTC)
    assert tokyo is not None and tokyo.astimezone(TOKYO).hour == 9


# --- intervals --------------------------------------------------------------------------------------

def test_interval_keeps_its_phase() -> None:
    anchor = datetime(2026, 5, 4, 10, 0, 7, tzinfo=PARIS)
    trigger = interval_trigger(600, PARIS, anchor)
    assert next_fire(trigger, datetime(2026, 5, 4, 12, 34, 56, tzinfo=PARIS)) == datetime(2026, 5, 4, 12, 40, 7, tzinfo=PARIS)
    assert next_fire(trigger, datetime(2026, 5, 4, 12, 40, 7, tzinfo=PARIS)) == datetime(2026, 5, 4, 12, 50, 7, tzinfo=PARIS)
    assert next_fire(trigger, anchor) == anchor + timedelta(seconds=600)  # the anchor itself is not a slot
    assert next_fire(trigger, anchor - timedelta(days=1)) == anchor + timedelta(seconds=600)
    # the scheduler asks APScheduler itself (previous=None, now): it agrees
    now = datetime(2026, 5, 4, 12, 34, 56, tzinfo=PARIS)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 5, 4, 12, 40, 7, tzinfo=PARIS)


def test_interval_counts_real_seconds_across_dst() -> None:
    anchor = datetime(2026, 3, 29, 1, 0, tzinfo=PARIS)  # CET
    fire = next_fire(interval_trigger(3600, PARIS, anchor), anchor)
    assert fire == datetime(2026, 3, 29, 3, 0, tzinfo=PARIS)  # CEST: one real hour later
    assert fire is not None and fire.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize("seconds", [0, 0.5, -60])
def test_interval_below_one_second_is_refused(seconds: float) -> None:
    with pytest.raises(ConfigError, match="too short; use at least 1 second"):
        interval_trigger(seconds, UTC, SATURDAY)


@pytest.mark.parametrize("seconds", [float("inf"), 1e30, 1e15])
def test_an_interval_too_long_for_a_datetime_is_a_config_error(seconds: float) -> None:
    with pytest.raises(ConfigError, match="too long; use at most 315360000 seconds"):
        interval_trigger(seconds, UTC, SATURDAY)
    with pytest.raises(ConfigError, match="not a number"):
        interval_trigger(float("nan"), UTC, SATURDAY)


def test_an_interval_of_ten_years_works() -> None:
    trigger = interval_trigger(315_360_000, UTC, SATURDAY)
    assert next_fire(trigger, SATURDAY) == SATURDAY + timedelta(seconds=315_360_000)


@settings(max_examples=200, deadline=None)
@given(seconds=st.integers(1, 10_000), offset=st.integers(-50_000, 500_000), span=st.integers(0, 100_000))
def test_interval_arithmetic_matches_stepping(seconds: int, offset: int, span: int) -> None:
    anchor = datetime(2026, 3, 28, 12, tzinfo=PARIS)  # the span crosses the spring-forward change
    trigger = interval_trigger(seconds, PARIS, anchor)
    after = (u(anchor) + timedelta(seconds=offset)).astimezone(PARIS)
    until = (u(after) + timedelta(seconds=span)).astimezone(PARIS)
    first = next_fire(trigger, after)
    assert first is not None and u(first) > u(after)
    assert u(first) - timedelta(seconds=seconds) <= u(after) or u(first) == u(anchor) + timedelta(seconds=seconds)
    assert (u(first) - u(anchor)).total_seconds() % seconds == 0
    stepped = fires(trigger, after, until)
    count, latest = slots_between(trigger, after, until)
    assert count == len(stepped) and latest == (stepped[-1] if stepped else None)


# --- at ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-23T17:00", datetime(2026, 11, 23, 17, tzinfo=PARIS)),
    ("2026-11-23T17:00:30", datetime(2026, 11, 23, 17, 0, 30, tzinfo=PARIS)),
    ("2026-11-23 17:00", datetime(2026, 11, 23, 17, tzinfo=PARIS)),
    ("  2026-11-23T17:00  ", datetime(2026, 11, 23, 17, tzinfo=PARIS)),
    ("2026-11-23T17:00+01:00", datetime(2026, 11, 23, 16, tzinfo=UTC)),
    ("2026-11-23T17:00-05:00", datetime(2026, 11, 23, 22, tzinfo=UTC)),
    ("2026-11-23T16:00Z", datetime(2026, 11, 23, 16, tzinfo=UTC)),
])
def test_parse_at(text: str, expected: datetime) -> None:
    when = parse_at(text, PARIS)
    assert when.tzinfo is not None
    assert when == expected


def test_parse_at_naive_is_in_the_given_zone() -> None:
    assert parse_at("2026-11-23T17:00", TOKYO).utcoffset() == timedelta(hours=9)
    assert parse_at("2026-03-29T02:30", PARIS) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # in the DST gap


@pytest.mark.parametrize("text", ["2026-11-23", "20261123"])
def test_parse_at_date_only_asks_for_a_time(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_at(text, PARIS)
    assert str(info.value) == f"'at' {text!r} is a date without a time; add the time, e.g. 2026-11-23T09:00."


@pytest.mark.parametrize("text", ["tomorrow at 5", "2026-02-30T10:00", "17:00", "", "2026-11-23T25:00"])
def test_parse_at_bad_text_shows_an_example(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_at(text, PARIS)
    assert str(info.value) == (f"'at' {text!r} is not an ISO 8601 date and time; write it like 2026-11-23T17:00 "
                               f"(read in the job's time zone) or 2026-11-23T17:00+01:00.")


def test_date_trigger_fires_once() -> None:
    when = datetime(2026, 11, 23, 17, tzinfo=PARIS)
    trigger = date_trigger(when)
    assert next_fire(trigger, when - timedelta(seconds=1)) == when
    assert next_fire(trigger, when) is None
    assert next_fire(trigger, when + timedelta(days=1)) is None
    assert slots_between(trigger, when - timedelta(days=1), when) == (1, when)
    assert slots_between(trigger, when, when + timedelta(days=1)) == (0, None)


# --- slots_between ----------------------------------------------------------------------------------

def test_every_minute_over_a_day() -> None:
    anchor = datetime(2026, 1, 1, 8, 0, 30, tzinfo=PARIS)
    count, latest = slots_between(interval_trigger(60, PARIS, anchor), anchor, anchor + timedelta(days=1))
    assert (count, latest) == (1440, anchor + timedelta(days=1))


def test_every_minute_over_a_year_is_arithmetic() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    after = anchor + timedelta(seconds=30)
    count, latest = slots_between(interval_trigger(60, UTC, anchor), after, after + timedelta(days=365), limit=10)
    assert count == 365 * 1440  # exact: the limit only applies to triggers that are walked
    assert latest == datetime(2027, 1, 1, tzinfo=UTC)


def test_hourly_cron_over_ten_hours() -> None:
    after = datetime(2026, 5, 4, 8, 0, tzinfo=PARIS)  # a slot itself: not counted
    count, latest = slots_between(cron_trigger("0 * * * *", PARIS), after, after + timedelta(hours=10))
    assert (count, latest) == (10, datetime(2026, 5, 4, 18, 0, tzinfo=PARIS))  # `until` itself counts


def test_no_slots() -> None:
    after = datetime(2026, 5, 4, 8, 1, tzinfo=PARIS)
    assert slots_between(cron_trigger("0 * * * *", PARIS), after, after + timedelta(minutes=58)) == (0, None)
    assert slots_between(interval_trigger(3600, PARIS, after), after, after + timedelta(minutes=59)) == (0, None)
    assert slots_between(cron_trigger("0 * * * *", PARIS), after, after) == (0, None)


def test_limit_stops_counting_but_finds_the_latest() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    count, latest = slots_between(cron_trigger("* * * * *", UTC), after, after + timedelta(days=30), limit=100)
    assert count == 100
    assert latest == after + timedelta(days=30)
    count, latest = slots_between(cron_trigger("0 9 1 * *", UTC), after, datetime(2027, 1, 1, tzinfo=UTC), limit=3)
    assert (count, latest) == (3, datetime(2026, 12, 1, 9, tzinfo=UTC))


# --- jobs -------------------------------------------------------------------------------------------

def job(**fields: object) -> CronJob:
    return CronJob.model_validate({"name": "morning", "message": "brief me", **fields})


def test_trigger_for_each_kind() -> None:
    anchor = datetime(2026, 5, 4, 10, 0, 7, tzinfo=UTC)
    cron = trigger_for(job(schedule="0 9 * * 1-5", timezone="Europe/Paris"), anchor)
    assert next_fire(cron, anchor) == datetime(2026, 5, 5, 9, tzinfo=PARIS)
    every = trigger_for(job(every=600, timezone="Asia/Tokyo"), anchor)
    assert isinstance(every, IntervalTrigger)
    assert next_fire(every, anchor + timedelta(hours=1)) == anchor + timedelta(hours=1, minutes=10)
    at = trigger_for(job(at="2026-11-23T17:00", timezone="Europe/Paris"), anchor)
    assert isinstance(at, DateTrigger) and next_fire(at, anchor) == datetime(2026, 11, 23, 17, tzinfo=PARIS)


def test_trigger_for_names_the_job() -> None:
    with pytest.raises(ConfigError, match=r"^Cron job 'morning': Cron expression '0 9 \* \* 8': day-of-week 8"):
        trigger_for(job(schedule="0 9 * * 8"), SATURDAY)
    with pytest.raises(ConfigError, match=r"^Cron job 'morning': Unknown time zone 'Mars/Olympus'"):
        trigger_for(job(every=60, timezone="Mars/Olympus"), SATURDAY)


def test_describe() -> None:
    assert describe(job(schedule="0 9 * * 1-5", timezone="Europe/Paris")) == 'cron "0 9 * * 1-5" (Europe/Paris)'
    assert describe(job(schedule="@daily")) == 'cron "@daily" (local time)'
    assert describe(job(every=3600)) == "every 3600 s"
    assert describe(job(every=1.5)) == "every 1.5 s"
    assert describe(job(at="2026-11-23T17:00", timezone="Europe/Paris")) == "at 2026-11-23 17:00 (Europe/Paris)"
    assert describe(job(at="2026-11-23T16:00:30Z", timezone="Europe/Paris")) == "at 2026-11-23 17:00:30 (Europe/Paris)"
    assert describe(job(at="soon", timezone="Europe/Paris")) == "at soon (Europe/Paris)"
