"""Business hours: validation reasons, open/closed across midnight, holidays and DST, next_open/next_close."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from conversations.routing.hours import BusinessHours, validate_config

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS_9_TO_6 = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
SHOP = {
    "time_zone": "Asia/Tokyo",
    "weekly": {**WEEKDAYS_9_TO_6, "sat": [["10:00", "14:00"]], "sun": []},
    "holidays": ["2026-01-01", "2026-12-31"],
}


def jst(*args) -> datetime:
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(**config) -> BusinessHours:
    return BusinessHours.from_config(config)


# --- validation -------------------------------------------------------------------------------------


def errors_of(config) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        validate_config(config)
    return caught.value.messages


@pytest.mark.parametrize(("config", "expected"), [
    ({"time_zone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"time_zone": "asia/tokyo"}, "unknown time zone 'asia/tokyo'"),
    ({"time_zone": "../../etc/passwd"}, "unknown time zone '../../etc/passwd'"),
    ({"time_zone": "/etc/localtime"}, "unknown time zone '/etc/localtime'"),
    ({"time_zone": 9}, "time_zone must be text"),
    ({"weekly": {"mon": [["09:00", "18:00"]]}}, "time_zone is required"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"mon": [["9:00", "18:00"]]}}, "mon: bad time '9:00' (expected HH:MM"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"tue": [["09:00", "25:00"]]}}, "tue: bad time '25:00'"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"tue": [["09:00", "12:60"]]}}, "tue: bad time '12:60'"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"tue": [["09:00", "24:01"]]}}, "tue: bad time '24:01'"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"tue": [["09:00", "18:00:00"]]}}, "tue: bad time '18:00:00'"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"tue": [["０９:00", "18:00"]]}}, "tue: bad time '０９:00'"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"wed": [["24:00", "02:00"]]}},
     "wed: bad time '24:00' (expected HH:MM, 00:00–23:59)"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"thu": [["09:00", "09:00"]]}},
     "thu: interval 09:00–09:00 is empty (end equals start)"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"thu": [["00:00", "00:00"]]}}, "is empty (end equals start)"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"monday": [["09:00", "18:00"]]}},
     "unknown weekday 'monday'; use mon, tue, wed, thu, fri, sat, sun"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"Mon": []}}, "unknown weekday 'Mon'"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"fri": [["09:00"]]}}, "fri: an interval must be [\"HH:MM\", \"HH:MM\"]"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"fri": [[9, 18]]}}, "fri: an interval must be"),
    ({"time_zone": "Asia/Tokyo", "weekly": {"fri": "09:00-18:00"}}, "fri: expected a list of [start, end] pairs"),
    ({"time_zone": "Asia/Tokyo", "weekly": [["09:00", "18:00"]]}, "weekly must be an object"),
    ({"time_zone": "Asia/Tokyo", "holidays": ["2026-02-30"]}, "bad holiday date '2026-02-30' (expected YYYY-MM-DD)"),
    ({"time_zone": "Asia/Tokyo", "holidays": ["2026/01/01"]}, "bad holiday date '2026/01/01'"),
    ({"time_zone": "Asia/Tokyo", "holidays": ["20260101"]}, "bad holiday date '20260101'"),
    ({"time_zone": "Asia/Tokyo", "holidays": [20260101]}, "bad holiday date 20260101"),
    ({"time_zone": "Asia/Tokyo", "holidays": "2026-01-01"}, "holidays must be a list"),
    ({"time_zone": "Asia/Tokyo", "weeky": {}}, "unknown key 'weeky'; allowed: time_zone, weekly, holidays"),
    (["Asia/Tokyo"], "business hours must be an object"),
])
def test_invalid_configs_are_refused_with_a_reason(config, expected):
    assert any(expected in message for message in errors_of(config)), errors_of(config)


def test_every_problem_is_reported_at_once():
    messages = errors_of({"time_zone": "Nowhere/City", "weekly": {"mon": [["9", "18:00"]], "funday": []},
                          "holidays": ["tomorrow"]})
    assert len(messages) == 4
    with pytest.raises(ValidationError):
        BusinessHours.from_config({"time_zone": "Nowhere/City"})


@pytest.mark.parametrize("config", [
    None,
    {},
    SHOP,
    {"time_zone": "UTC"},
    {"time_zone": "Asia/Tokyo", "weekly": {"mon": [["00:00", "24:00"]], "tue": [["22:00", "00:00"]], "wed": None}},
    {"time_zone": "America/New_York", "weekly": {"fri": [["22:00", "02:00"], ("09:00", "12:00")]}, "holidays": []},
])
def test_valid_configs(config):
    validate_config(config)
    BusinessHours.from_config(config)


# --- always open / never open -----------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, {}])
def test_an_empty_config_is_always_open(config):
    always = BusinessHours.from_config(config)
    at = utc(2026, 1, 1, 3, 4, 5)
    assert always.always_open
    assert always.is_open(at)
    assert always.next_open(at) == at
    assert always.next_close(at) is None


def test_no_weekly_means_open_around_the_clock_except_holidays():
    hols = hours(time_zone="Asia/Tokyo", holidays=["2026-12-31"])
    assert not hols.always_open
    assert hols.is_open(jst(2026, 12, 30, 3, 0))
    assert not hols.is_open(jst(2026, 12, 31, 12, 0))
    assert hols.next_close(jst(2026, 12, 30, 12, 0)) == jst(2026, 12, 31, 0, 0)
    assert hols.next_open(jst(2026, 12, 31, 12, 0)) == jst(2027, 1, 1, 0, 0)
    assert hours(time_zone="Asia/Tokyo").next_close(utc(2026, 5, 5)) is None


def test_an_empty_week_never_opens():
    closed = hours(time_zone="Asia/Tokyo", weekly={})
    at = utc(2026, 5, 5, 12)
    assert not closed.is_open(at)
    assert closed.next_open(at) is None
    assert closed.next_close(at) == at


# --- is_open ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "expected"), [
    (jst(2026, 3, 2, 8, 59, 59), False),  # Monday
    (jst(2026, 3, 2, 9, 0), True),
    (jst(2026, 3, 2, 17, 59, 59, 999999), True),
    (jst(2026, 3, 2, 18, 0), False),
    (jst(2026, 3, 6, 12, 0), True),  # Friday
    (jst(2026, 3, 7, 9, 59), False),  # Saturday
    (jst(2026, 3, 7, 10, 0), True),
    (jst(2026, 3, 7, 14, 0), False),
    (jst(2026, 3, 8, 12, 0), False),  # Sunday: empty list
    (jst(2026, 1, 1, 12, 0), False),  # holiday (a Thursday)
    (jst(2026, 1, 2, 12, 0), True),
    (jst(2026, 12, 31, 9, 30), False),
])
def test_is_open_in_tokyo(at, expected):
    assert BusinessHours.from_config(SHOP).is_open(at) is expected


def test_is_open_uses_the_configured_zone_not_utc():
    shop = BusinessHours.from_config(SHOP)
    # Monday 00:30 UTC is Monday 09:30 in Tokyo; Sunday 23:30 UTC is Monday 08:30 in Tokyo.
    assert shop.is_open(utc(2026, 3, 2, 0, 30))
    assert not shop.is_open(utc(2026, 3, 1, 23, 30))
    # Any aware datetime is fine, not only UTC.
    assert shop.is_open(datetime(2026, 3, 1, 19, 30, tzinfo=NEW_YORK))  # = Mon 09:30 JST


def test_naive_datetimes_are_refused():
    shop = BusinessHours.from_config(SHOP)
    for method in (shop.is_open, shop.next_open, shop.next_close):
        with pytest.raises(ValueError, match="timezone-aware"):
            method(datetime(2026, 3, 2, 9, 0))


NIGHT = {
    "time_zone": "Asia/Tokyo",
    "weekly": {"fri": [["22:00", "02:00"]], "sat": [["22:00", "24:00"]], "sun": [["20:00", "00:00"]]},
}


@pytest.mark.parametrize(("at", "expected"), [
    (jst(2026, 3, 6, 21, 59), False),  # Friday
    (jst(2026, 3, 6, 22, 0), True),
    (jst(2026, 3, 6, 23, 59), True),
    (jst(2026, 3, 7, 0, 0), True),  # Saturday, still Friday's shift
    (jst(2026, 3, 7, 1, 59, 59), True),
    (jst(2026, 3, 7, 2, 0), False),
    (jst(2026, 3, 7, 22, 0), True),
    (jst(2026, 3, 8, 0, 0), False),  # "24:00" ends at midnight, no spill
    (jst(2026, 3, 8, 20, 0), True),  # Sunday 20:00–00:00
    (jst(2026, 3, 9, 0, 0), False),
    (jst(2026, 3, 5, 23, 0), False),  # Thursday
])
def test_intervals_across_midnight(at, expected):
    assert BusinessHours.from_config(NIGHT).is_open(at) is expected


def test_a_holiday_cuts_the_evening_before_at_midnight():
    night = BusinessHours.from_config({**NIGHT, "holidays": ["2026-03-14"]})  # a Saturday
    assert night.is_open(jst(2026, 3, 13, 23, 0))  # Friday evening runs...
    assert not night.is_open(jst(2026, 3, 14, 0, 0))  # ...until midnight
    assert not night.is_open(jst(2026, 3, 14, 1, 0))
    assert not night.is_open(jst(2026, 3, 14, 22, 30))  # the holiday's own interval does not run
    assert night.next_close(jst(2026, 3, 13, 23, 0)) == jst(2026, 3, 14, 0, 0)


def test_a_holiday_cancels_its_own_overnight_interval_entirely():
    night = BusinessHours.from_config({**NIGHT, "holidays": ["2026-03-20"]})  # a Friday
    assert not night.is_open(jst(2026, 3, 20, 23, 0))
    assert not night.is_open(jst(2026, 3, 21, 1, 0))  # the after-midnight part belongs to the holiday's shift
    assert night.next_open(jst(2026, 3, 20, 12, 0)) == jst(2026, 3, 21, 22, 0)


# --- next_open / next_close -------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "expected"), [
    (jst(2026, 3, 2, 8, 0), jst(2026, 3, 2, 9, 0)),  # Monday morning
    (jst(2026, 3, 2, 9, 0), jst(2026, 3, 2, 9, 0)),  # open now: now
    (jst(2026, 3, 2, 12, 34, 56, 789), jst(2026, 3, 2, 12, 34, 56, 789)),
    (jst(2026, 3, 2, 18, 0), jst(2026, 3, 3, 9, 0)),
    (jst(2026, 3, 6, 18, 0), jst(2026, 3, 7, 10, 0)),  # Friday evening -> Saturday
    (jst(2026, 3, 7, 14, 0), jst(2026, 3, 9, 9, 0)),  # Saturday afternoon -> Monday
    (jst(2025, 12, 31, 18, 0), jst(2026, 1, 2, 9, 0)),  # over New Year's Day
    (jst(2026, 12, 30, 18, 0), jst(2027, 1, 1, 9, 0)),  # Dec 31 is a holiday, Jan 1 2027 is not listed
])
def test_next_open(at, expected):
    result = BusinessHours.from_config(SHOP).next_open(at)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(("at", "expected"), [
    (jst(2026, 3, 2, 9, 0), jst(2026, 3, 2, 18, 0)),
    (jst(2026, 3, 2, 17, 59, 59), jst(2026, 3, 2, 18, 0)),
    (jst(2026, 3, 7, 11, 0), jst(2026, 3, 7, 14, 0)),
    (jst(2026, 3, 2, 20, 0), jst(2026, 3, 2, 20, 0)),  # closed now: now
])
def test_next_close(at, expected):
    result = BusinessHours.from_config(SHOP).next_close(at)
    assert result == expected
    assert result.tzinfo is UTC


def test_next_open_and_close_across_midnight():
    night = BusinessHours.from_config(NIGHT)
    assert night.next_open(jst(2026, 3, 6, 12, 0)) == jst(2026, 3, 6, 22, 0)
    assert night.next_close(jst(2026, 3, 6, 22, 30)) == jst(2026, 3, 7, 2, 0)
    assert night.next_open(jst(2026, 3, 7, 2, 0)) == jst(2026, 3, 7, 22, 0)
    assert night.next_close(jst(2026, 3, 7, 22, 0)) == jst(2026, 3, 8, 0, 0)
    assert night.next_close(jst(2026, 3, 8, 21, 0)) == jst(2026, 3, 9, 0, 0)


def test_touching_and_overlapping_intervals_are_one_opening():
    split = hours(time_zone="Asia/Tokyo", weekly={
        "mon": [["09:00", "12:00"], ["12:00", "18:00"], ["10:00", "11:00"]],
        "tue": [["20:00", "24:00"]], "wed": [["00:00", "08:00"]],
    })
    assert split.next_close(jst(2026, 3, 2, 9, 0)) == jst(2026, 3, 2, 18, 0)
    assert split.next_close(jst(2026, 3, 3, 21, 0)) == jst(2026, 3, 4, 8, 0)  # Tuesday night into Wednesday


def test_open_around_the_clock_has_no_close_within_the_horizon():
    all_day = hours(time_zone="Asia/Tokyo", weekly={day: [["00:00", "24:00"]]
                                                     for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    at = jst(2026, 3, 2, 3, 0)
    assert all_day.is_open(at)
    assert all_day.next_open(at) == at
    assert all_day.next_close(at) is None
    with_holiday = hours(time_zone="Asia/Tokyo", weekly=all_day_weekly(), holidays=["2026-03-10"])
    assert with_holiday.next_close(at) == jst(2026, 3, 10, 0, 0)
    assert with_holiday.next_open(jst(2026, 3, 10, 5, 0)) == jst(2026, 3, 11, 0, 0)


def all_day_weekly():
    return {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def test_next_open_searches_fourteen_days():
    tuesday = jst(2026, 3, 3, 0, 0)
    mondays_only = {"time_zone": "Asia/Tokyo", "weekly": {"mon": [["09:00", "18:00"]]}}
    assert BusinessHours.from_config(mondays_only).next_open(tuesday) == jst(2026, 3, 9, 9, 0)
    one_holiday = BusinessHours.from_config({**mondays_only, "holidays": ["2026-03-09"]})
    assert one_holiday.next_open(tuesday) == jst(2026, 3, 16, 9, 0)
    two_holidays = BusinessHours.from_config({**mondays_only, "holidays": ["2026-03-09", "2026-03-16"]})
    assert two_holidays.next_open(tuesday) is None  # Monday the 23rd is beyond 14 days


def test_the_horizon_is_inclusive():
    sundays = {"time_zone": "UTC", "weekly": {"sun": [["13:00", "14:00"]]}}
    assert BusinessHours.from_config(sundays).next_open(utc(2026, 3, 1, 14, 0)) == utc(2026, 3, 8, 13, 0)
    rare = BusinessHours.from_config({**sundays, "holidays": ["2026-03-01", "2026-03-08"]})
    at = utc(2026, 3, 1, 13, 0)  # closed: a holiday
    assert rare.next_open(at) == at + timedelta(days=14)  # exactly 14 days ahead still counts
    assert rare.next_open(at - timedelta(seconds=1)) is None  # 14 days and a second does not


# --- DST (America/New_York: spring forward 2026-03-08 02:00 EST, fall back 2026-11-01 02:00 EDT) --------


NY_OFFICE = {"time_zone": "America/New_York", "weekly": {day: [["09:00", "17:00"]]
                                                         for day in ("mon", "tue", "wed", "thu", "fri")}}


def test_dst_office_hours_follow_the_local_clock():
    office = BusinessHours.from_config(NY_OFFICE)
    assert not office.is_open(utc(2026, 3, 6, 13, 30))  # Fri 08:30 EST
    assert office.is_open(utc(2026, 3, 6, 14, 0))  # Fri 09:00 EST
    assert office.next_close(utc(2026, 3, 6, 15, 0)) == utc(2026, 3, 6, 22, 0)  # 17:00 EST
    # After the change 09:00 is 13:00 UTC, an hour earlier in UTC than the week before.
    assert office.next_open(utc(2026, 3, 6, 22, 0)) == utc(2026, 3, 9, 13, 0)
    assert office.is_open(utc(2026, 3, 9, 13, 0))
    assert office.next_close(utc(2026, 3, 9, 13, 0)) == utc(2026, 3, 9, 21, 0)  # 17:00 EDT
    # And back in November.
    assert office.next_close(utc(2026, 10, 30, 15, 0)) == utc(2026, 10, 30, 21, 0)  # 17:00 EDT
    assert office.next_open(utc(2026, 10, 30, 21, 0)) == utc(2026, 11, 2, 14, 0)  # 09:00 EST


def test_dst_overnight_shifts_are_shorter_and_longer_in_real_time():
    nights = BusinessHours.from_config({"time_zone": "America/New_York", "weekly": {"sat": [["22:00", "04:00"]]}})
    # Spring: Sat 22:00 EST -> Sun 04:00 EDT is five real hours.
    assert nights.next_open(utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 8, 3, 0)
    assert nights.next_close(utc(2026, 3, 8, 3, 0)) == utc(2026, 3, 8, 8, 0)
    # Autumn: Sat 22:00 EDT -> Sun 04:00 EST is seven, open through both 01:30s.
    assert nights.next_open(utc(2026, 10, 31, 12, 0)) == utc(2026, 11, 1, 2, 0)
    assert nights.is_open(utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    assert nights.is_open(utc(2026, 11, 1, 6, 30))  # 01:30 EST
    assert nights.next_close(utc(2026, 11, 1, 2, 0)) == utc(2026, 11, 1, 9, 0)


def test_dst_a_boundary_inside_the_spring_gap_takes_effect_when_the_clock_jumps():
    # 02:30 does not exist on 2026-03-08: the clock goes from 01:59:59 EST (06:59:59 UTC) to 03:00 EDT.
    late = BusinessHours.from_config({"time_zone": "America/New_York", "weekly": {"sun": [["02:30", "05:00"]]}})
    assert not late.is_open(utc(2026, 3, 8, 6, 59, 59))
    assert late.is_open(utc(2026, 3, 8, 7, 0))
    assert late.next_open(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 0)
    assert late.next_close(utc(2026, 3, 8, 7, 0)) == utc(2026, 3, 8, 9, 0)  # 05:00 EDT
    # An interval wholly inside the gap never happens that day.
    skipped = BusinessHours.from_config({"time_zone": "America/New_York", "weekly": {"sun": [["02:15", "02:45"]]}})
    assert skipped.next_open(utc(2026, 3, 8, 0, 0)) == utc(2026, 3, 15, 6, 15)  # 02:15 EDT a week later
    early = BusinessHours.from_config({"time_zone": "America/New_York", "weekly": {"sun": [["00:00", "02:30"]]}})
    assert early.next_open(utc(2026, 3, 8, 1, 0)) == utc(2026, 3, 8, 5, 0)  # 00:00 EST
    assert early.next_close(utc(2026, 3, 8, 6, 0)) == utc(2026, 3, 8, 7, 0)


def test_dst_a_boundary_inside_the_repeated_hour_counts_on_the_wall_clock():
    # 2026-11-01: 01:00–01:59 happens twice (EDT, then EST from 06:00 UTC).
    shift = BusinessHours.from_config({"time_zone": "America/New_York", "weekly": {"sun": [["01:30", "05:00"]]}})
    assert shift.next_open(utc(2026, 11, 1, 4, 0)) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert shift.next_close(utc(2026, 11, 1, 5, 45)) == utc(2026, 11, 1, 6, 0)  # clock back to 01:00 EST
    assert shift.next_open(utc(2026, 11, 1, 6, 0)) == utc(2026, 11, 1, 6, 30)  # 01:30 EST
    assert shift.next_close(utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 1, 10, 0)  # 05:00 EST


@pytest.mark.parametrize("config", [
    {"time_zone": "America/New_York", "weekly": {"sat": [["22:00", "04:00"]], "sun": [["01:30", "02:30"],
                                                                                       ["03:15", "09:00"]]}},
    {"time_zone": "America/New_York", "weekly": {"sun": [["00:00", "02:30"], ["02:45", "03:30"]]},
     "holidays": ["2026-03-09"]},
    {"time_zone": "America/New_York", "weekly": {"sun": [["01:30", "02:30"], ["02:15", "02:45"]],
                                                 "sat": [["12:00", "13:00"]]}},
    {"time_zone": "Asia/Tokyo", "weekly": {"sat": [["23:00", "01:00"]], "sun": [["12:00", "13:00"]]}},
])
@pytest.mark.parametrize("around", [utc(2026, 3, 7, 12, 0), utc(2026, 10, 31, 12, 0)])
def test_next_open_and_close_agree_with_a_scan(config, around):
    """Whatever the DST weather: the answer is in the right state, and nothing earlier was."""
    business = BusinessHours.from_config(config)
    for step in range(0, 36 * 60, 83):
        at = around + timedelta(minutes=step, seconds=13)
        for want_open, method in ((True, business.next_open), (False, business.next_close)):
            result = method(at)
            assert result is not None
            assert business.is_open(result) is want_open
            if result > at:
                assert business.is_open(result - timedelta(seconds=1)) is not want_open
                moment = at
                while moment < result:
                    assert business.is_open(moment) is not want_open, (at, moment, result)
                    moment += timedelta(minutes=5)  # every opening in these configs lasts longer
