"""The client's pace, pure: the token bucket, AIMD on 429, and the RateLimit headers, on a virtual clock."""

from __future__ import annotations

import email.utils
import itertools
import math
import sys
import threading

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mountsea._pacing import CALM, DECREASE, FLOOR, INCREASE, Pacer, advertised
from mountsea._retry import MAX_RETRY_AFTER, http_date

NOW = 1_800_000_000.0  # a Unix time, for the answers' Date
HEADER_NAMES = [
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]


def _advertised(headers: dict[str, str], date: float | None = None) -> tuple[float | None, list[tuple[float, float]]]:
    return advertised(httpx.Headers(headers), date)  # as the drivers pass them: names in any case


def _sends(pacer: Pacer, start: float, until: float, step: float = 0.001) -> list[float]:
    """When a client that always has a request ready sends, asking the pacer every ``step`` s."""
    sent, now = [], start
    while now < until:
        if pacer.take(now) == 0.0:
            sent.append(now)
        now += step
    return sent


def _accepted_at(pacer: Pacer, rate: float, start: float, count: int) -> float:
    """``count`` accepted answers, ``rate`` per second from ``start``; returns the time of the last."""
    for i in range(count):
        pacer.observe(200, {}, start + i / rate, None)
    return start + (count - 1) / rate


# -- what the headers say -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "date", "expected"),
    [
        ({}, None, (None, [])),
        # draft-ietf-httpapi-ratelimit-headers-11: a policy (quota per window) and what is left of it
        ({"RateLimit-Policy": '"default";q=100;w=60'}, None, (100 / 60, [])),
        ({"RateLimit": '"default";r=50;t=30'}, None, (None, [(50.0, 30.0)])),
        (
            {"RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400', "RateLimit": '"burst";r=0;t=12'},
            None,
            (100 / 60, [(0.0, 12.0)]),  # the shortest window's rate: the day's average would be one a minute
        ),
        ({"RateLimit-Policy": '"default";q=10;w=1;pk=:cHJvZA==:'}, None, (10.0, [])),  # other parameters
        ({"RateLimit-Policy": "10;w=1"}, None, (10.0, [])),  # a bare quota
        # the older drafts: one RateLimit field, or three
        ({"RateLimit": "limit=100, remaining=50, reset=5"}, None, (None, [(50.0, 5.0)])),
        (
            {"RateLimit-Limit": "100", "RateLimit-Remaining": "7", "RateLimit-Reset": "30"},
            None,
            (None, [(7.0, 30.0)]),
        ),
        # the common X- trio, its reset in seconds or as a Unix time (against the answer's Date)
        ({"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "30"}, None, (None, [(7.0, 30.0)])),
        ({"x-ratelimit-remaining": "7", "x-ratelimit-reset": f"{NOW + 30:.0f}"}, NOW, (None, [(7.0, 30.0)])),
        ({"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": f"{NOW - 30:.0f}"}, NOW, (None, [(7.0, 0.0)])),
        ({"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": f"{NOW + 30:.0f}"}, None, (None, [])),  # no Date
    ],
    ids=[
        "none",
        "policy",
        "window",
        "several-policies",
        "policy-params",
        "bare-quota",
        "older-one-field",
        "older-three-fields",
        "x-delta",
        "x-epoch",
        "x-epoch-past",
        "x-epoch-no-date",
    ],
)
def test_every_header_form_is_read(
    headers: dict[str, str], date: float | None, expected: tuple[float | None, list[tuple[float, float]]]
) -> None:
    rate, windows = _advertised(headers, date)
    assert rate == pytest.approx(expected[0])
    assert sorted(set(windows)) == expected[1]


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Policy": "garbage"},
        {"RateLimit-Policy": '"default";q=10;w=0'},  # a window of no length
        {"RateLimit-Policy": '"default";q=10'},  # no window
        {"RateLimit-Policy": '"a";q=nan;w=1, "b";q=inf;w=1, "c";q=-5;w=1, "d";q=1e999;w=1'},
        {"RateLimit-Policy": ";;;==,,;q=;w=", "RateLimit": ",,;r=;t=;="},
        {"RateLimit": '"default";r=abc;t=30'},
        {"RateLimit": '"default";r=5;t=-1'},
        {"RateLimit": '"default";r=5'},  # remaining without a reset
        {"RateLimit-Remaining": "many", "RateLimit-Reset": "soon"},
        {"RateLimit-Remaining": "5", "RateLimit-Reset": "nan"},
        {"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "10"},
        {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "Fri, 31 Dec 2027 23:59:59 GMT"},
        {"X-RateLimit-Remaining": "5"},
    ],
)
def test_unparseable_values_are_ignored(headers: dict[str, str]) -> None:
    assert _advertised(headers, NOW) == (None, [])


@settings(derandomize=True, database=None, max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(HEADER_NAMES), st.text(), max_size=4), st.none() | st.floats())
def test_no_header_value_raises(headers: dict[str, str], date: float | None) -> None:
    rate, windows = advertised({name.lower(): value for name, value in headers.items()}, date)
    assert rate is None or 0 <= rate < math.inf
    assert all(remaining >= 0 and reset >= 0 for remaining, reset in windows)
    pacer = Pacer()  # nor does an answer carrying them
    pacer.observe(200, {name.lower(): value for name, value in headers.items()}, 0.0, date)
    assert pacer.take(0.0) >= 0.0


@pytest.mark.parametrize("policy", ['"default";q=0;w=60', "0;w=1", '"default";q=5;w=0'])
def test_a_policy_of_no_requests_or_no_window_is_ignored(policy: str) -> None:
    pacer = Pacer()
    pacer.observe(200, httpx.Headers({"RateLimit-Policy": policy}), 0.0, NOW)
    assert pacer.rate(0.0) is None
    assert pacer.take(0.0) == 0.0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{NOW * 1000:.0f}"},  # a Unix time in milliseconds
        {"RateLimit": "r=0;t=100000000"},
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "999999999"},
    ],
)
def test_no_reset_parks_a_client_longer_than_a_retry_after_may(headers: dict[str, str]) -> None:
    pacer = Pacer()
    pacer.observe(200, httpx.Headers(headers), 0.0, NOW)
    assert 0 < pacer.take(0.0) <= MAX_RETRY_AFTER


def test_an_epoch_reset_is_measured_against_the_answers_date_not_the_local_clock() -> None:
    # The server's clock may be hours off ours: a reset in its time is read on its Date.
    date = "Tue, 15 Jan 2030 08:00:00 GMT"
    server_now = http_date(date)
    assert server_now is not None
    pacer = Pacer()
    pacer.observe(
        200,
        {"date": date, "x-ratelimit-remaining": "0", "x-ratelimit-reset": f"{server_now + 4:.0f}"},
        50.0,
        server_now,
    )
    assert pacer.take(50.0) == pytest.approx(4.0)


# -- the token bucket -----------------------------------------------------------------------------


def test_without_a_ceiling_no_request_waits() -> None:
    pacer = Pacer()
    assert pacer.rate(0.0) is None
    assert [pacer.take(0.0) for _ in range(100)] == [0.0] * 100
    for i in range(50):
        pacer.observe(200, {}, i * 0.001, None)
    assert pacer.rate(1.0) is None


def test_max_rate_spaces_requests_without_a_burst() -> None:
    pacer = Pacer(max_rate=16)  # a token every 1/16 s: exact in binary
    assert pacer.take(10.0) == 0.0  # the first goes at once
    assert pacer.take(10.0) == 0.0625  # the next one a token later
    assert pacer.take(10.03125) == 0.03125
    assert pacer.take(10.0625) == 0.0
    sent = _sends(pacer, 100.0, 102.0)  # after a long idle time: still one token, not a burst
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) in (32, 33)
    assert min(gaps) >= 0.0625 - 1e-3
    for start in sent:
        assert sum(start <= t < start + 1.0 for t in sent) <= 16 + 1


def test_the_first_paced_request_is_not_free() -> None:
    # Requests went unpaced until an answer told the limit: the next one waits a token from that answer,
    # or a window of q requests would see q + 1.
    pacer = Pacer()
    assert pacer.take(0.0) == 0.0
    pacer.observe(200, {"ratelimit-policy": '"default";q=4;w=1'}, 0.01, None)
    assert pacer.take(0.01) == pytest.approx(0.25)
    assert pacer.take(0.26) == 0.0


def test_a_window_spent_blocks_until_its_reset() -> None:
    pacer = Pacer()
    pacer.observe(200, {"ratelimit": '"default";r=0;t=3'}, 10.0, None)
    assert pacer.rate(10.0) == 0.0
    assert pacer.take(10.0) == pytest.approx(3.0)
    assert pacer.take(12.5) == pytest.approx(0.5)
    assert pacer.take(13.0) == 0.0  # reset: one request goes, and its answer tells the next window
    assert pacer.rate(13.0) == FLOOR
    assert pacer.take(13.0) == pytest.approx(1.0)


def test_past_a_reset_requests_keep_the_windows_pace_until_an_answer_tells_the_next() -> None:
    # Unpaced, every due task would go at once into the new window, before its first answer says how big it is.
    pacer = Pacer()
    pacer.observe(200, {"ratelimit": '"default";r=4;t=1'}, 10.0, None)
    assert pacer.rate(12.0) == pytest.approx(4.0)
    assert [pacer.take(12.0) for _ in range(3)] == [0.0, pytest.approx(0.25), pytest.approx(0.25)]
    pacer.observe(200, {"ratelimit": '"default";r=9;t=1'}, 12.01, None)
    assert pacer.rate(12.01) == pytest.approx(9.0)


def test_what_is_left_of_a_window_is_spread_over_it() -> None:
    pacer = Pacer()
    pacer.observe(200, {"ratelimit-remaining": "4", "ratelimit-reset": "2"}, 10.0, None)
    assert pacer.rate(10.0) == pytest.approx(2.0)
    sent = _sends(pacer, 10.0, 12.0)
    assert len(sent) <= 4 + 1
    pacer.observe(
        200,
        {"ratelimit-remaining": "4", "ratelimit-reset": "2", "x-ratelimit-remaining": "1", "x-ratelimit-reset": "2"},
        12.0,
        None,
    )
    assert pacer.rate(12.0) == pytest.approx(0.5)  # of several windows, the tightest


def test_the_lowest_ceiling_wins_and_a_policy_outlasts_its_answer() -> None:
    pacer = Pacer(max_rate=50)
    pacer.observe(200, {"ratelimit-policy": '"default";q=10;w=1'}, 0.0, None)
    assert pacer.rate(0.0) == pytest.approx(10.0)
    pacer.observe(200, {}, 1.0, None)  # an answer without the fields keeps what the last said
    assert pacer.rate(1000.0) == pytest.approx(10.0)
    pacer.observe(200, {"ratelimit-policy": '"default";q=600;w=1'}, 2.0, None)
    assert pacer.rate(2.0) == 50  # the user's ceiling, lower still


def test_a_429_carries_the_fields_too() -> None:
    pacer = Pacer()
    pacer.observe(429, {"ratelimit": '"default";r=0;t=5'}, 0.0, None)  # slow client: no cut, but the window holds
    assert pacer.learned is None
    assert pacer.take(0.0) == pytest.approx(5.0)


# -- additive increase, multiplicative decrease on 429 -------------------------------------------


def test_a_429_cuts_the_rate_to_a_share_of_the_accepted_rate_and_answers_raise_it() -> None:
    pacer = Pacer()
    last = _accepted_at(pacer, 20.0, 0.0, 40)
    pacer.observe(429, {}, last + 0.05, None)
    assert pacer.learned == pytest.approx(DECREASE * 20.0)
    assert pacer.rate(last + 0.05) == pytest.approx(17.0)
    for i in range(100):
        pacer.observe(200, {}, last + 0.1 + i / 17, None)
    assert pacer.learned == pytest.approx(17.0 + 100 * INCREASE)  # +1.5 req/s after 100 answers


def test_a_burst_accepted_is_measured_over_a_second() -> None:
    # Ten answers in 10 ms are not a rate of 900/s: the server accepted ten in the last second.
    pacer = Pacer()
    last = _accepted_at(pacer, 1000.0, 0.0, 10)
    pacer.observe(429, {}, last + 0.001, None)
    assert pacer.learned == pytest.approx(DECREASE * 9)


def test_the_rate_cut_from_is_that_of_the_last_seconds_not_of_a_quiet_past() -> None:
    # A client that polled every 5 s for minutes, then runs a batch at 20/s: cut from 20, not from its average.
    pacer = Pacer()
    start = _accepted_at(pacer, 0.2, 0.0, 64) + 5
    last = _accepted_at(pacer, 20.0, start, 40)
    pacer.observe(429, {}, last + 0.05, None)
    assert pacer.learned == pytest.approx(DECREASE * 20.0)


def test_one_cut_per_calm_second() -> None:
    # The 429s to requests sent at the old rate, before the cut took effect, cut no further.
    pacer = Pacer()
    last = _accepted_at(pacer, 20.0, 0.0, 40)
    for i in range(10):
        pacer.observe(429, {}, last + 0.01 * (i + 1), None)
    assert pacer.learned == pytest.approx(17.0)
    cut = last + 0.01
    resumed = _accepted_at(pacer, 17.0, cut + 0.05, 10)
    pacer.observe(429, {}, cut + CALM - 0.01, None)  # still within the calm second
    assert pacer.learned == pytest.approx(17.0 + 10 * INCREASE)
    pacer.observe(429, {}, max(resumed, cut + CALM) + 0.01, None)  # after it: cut again, from the lower rate
    assert pacer.learned == pytest.approx(DECREASE * (17.0 + 10 * INCREASE))


def test_cuts_never_go_below_the_floor() -> None:
    pacer = Pacer()
    now = _accepted_at(pacer, 20.0, 0.0, 40)
    for _ in range(60):
        now += CALM
        pacer.observe(429, {}, now, None)
        pacer.observe(429, {}, now + 0.1, None)
    assert pacer.learned == FLOOR


def test_slow_clients_are_not_cut() -> None:
    # A client asking less than once a second is left to Retry-After and the backoff.
    pacer = Pacer()
    for i in range(10):
        pacer.observe(200, {}, 2.0 * i, None)
    for i in range(10, 20):
        pacer.observe(429, {}, 2.0 * i, None)
    assert pacer.learned is None
    assert pacer.rate(100.0) is None


def test_the_learned_rate_is_a_ceiling_under_max_rate() -> None:
    pacer = Pacer(max_rate=10)
    last = _accepted_at(pacer, 10.0, 0.0, 40)
    pacer.observe(429, {}, last + 0.1, None)
    assert pacer.rate(last + 0.1) == pytest.approx(8.5)
    for i in range(200):  # recovered well past max_rate: the user's ceiling holds
        pacer.observe(200, {}, last + 1 + i / 8.5, None)
    assert pacer.rate(100.0) == 10


def test_an_http_date_parses_for_the_pacer() -> None:
    assert http_date(email.utils.formatdate(NOW, usegmt=True)) == NOW
    assert http_date("yesterday") is None


def test_two_named_policies_are_not_mixed_into_one_window() -> None:
    """Draft-11 items stand alone: one's remaining is never read against the other's reset."""
    _, windows = advertised({"ratelimit": '"a";r=10;t=60, "b";r=0'}, None)
    assert windows == [(10.0, 60.0)]


def test_threads_taking_at_once_share_one_token() -> None:
    """The sync client's calls on several threads: one token lets one request go, however they interleave."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: any unguarded step shows
    try:
        for _ in range(300):
            pacer, start, went = Pacer(max_rate=1), threading.Barrier(8), []

            def take(pacer: Pacer = pacer, start: threading.Barrier = start, went: list[float] = went) -> None:
                start.wait()
                went.append(pacer.take(100.0))

            threads = [threading.Thread(target=take) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(went)[:2] == [0.0, pytest.approx(1.0)], went
    finally:
        sys.setswitchinterval(switch)
