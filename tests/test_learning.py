"""What a client learns of task durations, and the polls it then places, pure, on a virtual clock."""

from __future__ import annotations

import bisect
import datetime
import email.utils
import itertools
import math
import random
import statistics
from collections.abc import Sequence

import pytest

import mountsea
from mountsea._learning import HORIZON, MIN_DELAY, MIN_SAMPLES, PLANS, SAMPLES, Durations, age_of, duration_of
from mountsea._pacing import Pacer
from mountsea._retry import PollPolicy
from mountsea._scheduler import RANKED, Call, ClientState, Scheduler
from tests.helpers import make_task

SERVER_CLOCK = 1_900_000_000  # the server's Unix time at virtual time 0 (a whole second: Date is exact then)
UNIFORM = [10 + 10 * i / 19 for i in range(20)]  # 20 durations, 10 s to 20 s
OLD_CURVE = [1.5, 2.25, 3.375, 5.0, 5.0]  # PollPolicy()'s pauses without jitter
ADAPTIVE = PollPolicy(latency=2.5, jitter=0)  # PollPolicy.adaptive(), without jitter: exact pauses
REF = mountsea.TaskRef("producer", "t")


def _durations(seconds: Sequence[float]) -> Durations:
    durations, rng = Durations(), random.Random(0)
    for took in seconds:
        durations.add(took, rng)
    return durations


def _state(seconds: Sequence[float] = (), max_rate: float | None = None) -> ClientState:
    state = ClientState(rng=random.Random(0), pacer=Pacer(max_rate))
    state.durations["producer"] = _durations(seconds)
    return state


def _moment(unix: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC)


def _call(policy: PollPolicy = ADAPTIVE, *, single: bool = True) -> Call:
    return Call(until_done=True, single=single, deadline=None, policy=policy, max_retries=2, raise_on_failure=single)


class World:
    """Tasks on a virtual server: each created at a virtual time, done a number of seconds later.

    Its answers carry the server's ``Date`` and the task's ``createdAt`` (``finishedAt`` once
    done) on its own clock, ``skew`` seconds off any other; with ``dated=False``, neither.
    """

    def __init__(self, tasks: dict[mountsea.TaskRef, tuple[float, float]], *, skew: float = 0, dated: bool = True):
        self.tasks, self.skew, self.dated = tasks, skew, dated
        self.sent: list[tuple[float, mountsea.TaskRef]] = []

    def answer(self, ref: mountsea.TaskRef, now: float) -> tuple[mountsea.Task, dict[str, str]]:
        self.sent.append((now, ref))
        created, took = self.tasks[ref]
        done = now >= created + took
        if not self.dated:
            return make_task("completed" if done else "processing", service=ref.service, task_id=ref.id), {}
        clock = SERVER_CLOCK + self.skew
        task = make_task(
            "completed" if done else "processing",
            service=ref.service,
            task_id=ref.id,
            created_at=_moment(clock + created),
            finished_at=_moment(clock + created + took) if done else None,
        )
        return task, {"date": email.utils.formatdate(clock + now, usegmt=True)}

    def times(self, ref: mountsea.TaskRef = REF) -> list[float]:
        return [now for now, sent in self.sent if sent == ref]


def run(world: World, *schedulers: Scheduler, start: float = 0.0) -> list[mountsea.Task]:
    """Run calls side by side like front ends would, each answer coming back at once."""
    now, active, handed = start, list(schedulers), []
    while active:
        waits = []
        for scheduler in list(active):
            plan = scheduler.plan(now)
            handed += plan.ready
            if plan.done:
                active.remove(scheduler)
                continue
            for tracked, _ in plan.send:
                task, headers = world.answer(tracked.ref, now)
                scheduler.record(tracked, task, now, headers)
            waits.append(0.0 if plan.send or plan.ready else plan.wait)
        if active:
            wait = min(waits, key=lambda w: float("inf") if w is None else w)
            assert wait is not None, "nothing in flight to wait for"
            now += wait
    return handed


def _wait(world: World, state: ClientState, policy: PollPolicy = ADAPTIVE, start: float = 0.0) -> mountsea.Task:
    [task] = run(world, Scheduler([REF], call=_call(policy), state=state, now=start), start=start)
    return task


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


# -- Durations ------------------------------------------------------------------------------------


def test_the_reservoir_stays_bounded_and_uniform_over_the_last_thousand() -> None:
    durations = _durations(range(HORIZON))  # in order of arrival: a biased sample would show it
    kept = list(durations._sorted)  # the sample itself: nothing else says how much is kept
    assert len(kept) == SAMPLES == 200
    assert 430 < statistics.fmean(kept) < 570
    assert min(kept) < 100
    assert max(kept) > 900
    assert kept == sorted(kept)


def test_the_reservoir_follows_a_service_that_changes_however_long_it_ran_before() -> None:
    durations = _durations([60.0] * 100_000 + [10.0] * 2_000)  # a minute for 100,000 tasks, then 10 s
    kept = list(durations._sorted)
    assert len(kept) == SAMPLES
    assert kept.count(10.0) > 0.8 * SAMPLES  # of a uniform sample of all 102,000, 2 % would be


def test_schedules_are_kept_for_the_last_few_latencies_asked() -> None:
    durations = _durations(UNIFORM)
    for latency in range(1, 100):
        durations.next_delay(12.0, float(latency))
    assert len(durations._plans) == PLANS
    assert durations.next_delay(12.0, 99.0) == durations.next_delay(12.0, 99.0)


def test_ready_at_twenty_durations_and_no_delay_before() -> None:
    assert MIN_SAMPLES == 20
    durations = _durations(UNIFORM[:19])
    assert not durations.ready
    assert durations.next_delay(0.0, 2.5) is None
    durations.add(UNIFORM[19], random.Random(0))
    assert durations.ready
    assert durations.next_delay(0.0, 2.5) is not None


@pytest.mark.parametrize("latency", [1.5, 2.5])
def test_a_task_older_than_any_seen_is_polled_every_twice_the_latency(latency: float) -> None:
    durations = _durations(UNIFORM)
    assert durations.next_delay(30.0, latency) == 2 * latency  # a mean latency of `latency`, wherever it ends


def test_one_long_duration_learned_does_not_space_the_polls_of_the_tasks_past_the_rest() -> None:
    # 49 durations of 30-120 s and one of an hour: a task of 300 s is still polled every 5 s, not in 40 minutes.
    durations = _durations([30 + 90 * i / 48 for i in range(49)] + [3600.0])
    assert all(durations.next_delay(age, 2.5) <= 5.0 for age in range(121, 3600, 7))  # type: ignore[operator]


@pytest.mark.parametrize("latency", [0.5, 1.0, 2.5])
def test_no_poll_in_the_dead_zone_before_the_shortest_duration(latency: float) -> None:
    durations = _durations(UNIFORM)
    first = durations.next_delay(0.0, latency)
    assert first is not None
    # None can finish before 10 s: the first pause from age 0 skips (nearly) all of it.
    assert first >= 0.85 * min(UNIFORM)
    if latency >= 2.5:
        assert first >= min(UNIFORM)


def _ages(durations: Durations, latency: float, until: float) -> list[float]:
    """The ages a task is polled at, from age 0, while the learned durations place them."""
    ages = [0.0]
    while ages[-1] < until and (pause := durations.next_delay(ages[-1], latency)) is not None:
        ages.append(ages[-1] + pause)
    return ages


def test_pauses_shrink_as_completions_grow_likely() -> None:
    # Uniform over 10-20 s: the hazard of finishing grows as 1 / (20 - age), so the pauses shrink.
    ages = _ages(_durations(UNIFORM), 1.0, 19.0)
    inside = [b - a for a, b in itertools.pairwise(ages) if 10 <= a < 19]
    assert len(inside) >= 3
    assert inside == sorted(inside, reverse=True)


def test_pauses_are_dense_where_completions_are_likely_and_sparse_between() -> None:
    # Half the tasks take 10-11 s, half 30-31 s: none ends between.
    durations = _durations([10 + i / 10 for i in range(10)] + [30 + i / 10 for i in range(10)])
    ages = _ages(durations, 1.0, 32.0)
    pauses = list(itertools.pairwise(ages))
    in_cluster = [b - a for a, b in pauses if 8 <= a < 12]
    across_gap = [b - a for a, b in pauses if 12 <= a < 28]
    assert in_cluster
    assert max(across_gap) > 2 * max(in_cluster)
    assert any(9 <= a <= 12 for a in ages)  # polled where they end
    assert any(29 <= a <= 32 for a in ages)


@pytest.mark.parametrize("latency", [0.5, 1.0, 2.5, 5.0])
@pytest.mark.parametrize("low", [30.0, 600.0])  # tasks of minutes: a grid 1.5 % of the age apart would be too coarse
def test_the_mean_latency_over_the_durations_learnt_is_the_one_asked(latency: float, low: float) -> None:
    seconds = [low + 3 * low * i / 199 for i in range(200)]  # polled from age 0 on the schedule they give
    ages = _ages(_durations(seconds), latency, 4 * low)
    late = statistics.fmean(ages[bisect.bisect_left(ages, took)] - took for took in seconds)
    assert late == pytest.approx(latency, rel=0.15)


def test_learnt_from_a_small_sample_the_latency_on_the_true_distribution_is_the_one_asked() -> None:
    # 50 durations of a log-normal (median 60 s): fit too closely, the estimate has gaps where the
    # sample has, and tasks that end there are seen late (1.1-1.15x the latency asked, on average).
    latencies = []
    for seed in range(10):
        rng = random.Random(seed)
        learned = _durations([rng.lognormvariate(math.log(60), 0.5) for _ in range(50)])
        fresh = [rng.lognormvariate(math.log(60), 0.5) for _ in range(2000)]
        ages = _ages(learned, 2.5, max(fresh))
        ages += [ages[-1] + 5 * i for i in range(1, int((max(fresh) - ages[-1]) / 5) + 2)]  # the fixed curve's
        latencies.append(statistics.fmean(ages[bisect.bisect_left(ages, took)] - took for took in fresh))
    assert statistics.fmean(latencies) == pytest.approx(2.5, rel=0.06)


@pytest.mark.parametrize("latency", [1.0, 2.5])
def test_the_gap_between_two_kinds_of_tasks_gets_no_poll(latency: float) -> None:
    # 30 % take 2-10 s, 70 % 30-120 s: the kernel is as wide as one kind is spread, not as the gap.
    seconds = [2 + 8 * i / 14 for i in range(15)] + [30 + 90 * i / 34 for i in range(35)]
    ages = _ages(_durations(seconds), latency, 120.0)
    assert [a for a in ages if 14 < a < 29] == []
    assert len([a for a in ages if 0 < a <= 14]) >= 3  # polled where the short ones end
    assert any(29 <= a <= 40 for a in ages)


@pytest.mark.parametrize(
    "seconds",
    [[60.0] * 20, [10.0] * 10 + [20.0] * 10, [float(5 + i % 4) for i in range(40)]],
    ids=["one-value", "two-values", "whole-seconds"],
)
@pytest.mark.parametrize("latency", [0.25, 2.5])
def test_durations_that_repeat_still_give_pauses_within_reach(seconds: list[float], latency: float) -> None:
    # A server writing whole seconds repeats its durations: the sample is a few steps, not a curve.
    ages = _ages(_durations(seconds), latency, max(seconds))
    assert ages[1] <= 1.5 * max(seconds)  # the first poll after the first comes while tasks may still finish
    assert ages[-1] <= 2 * max(seconds) + 2 * latency


def test_done_probability_is_conditional_on_not_done_before() -> None:
    durations = _durations(UNIFORM)
    assert durations.done_probability(0.0, 5.0) == 0.0
    assert durations.done_probability(0.0, 15.0) == pytest.approx(0.5, abs=0.05)
    assert durations.done_probability(15.0, 17.5) == pytest.approx(0.5, abs=0.07)  # (0.75 - 0.5) / (1 - 0.5)
    assert durations.done_probability(0.0, 30.0) == 1.0
    assert durations.done_probability(30.0, 31.0) == 0.5  # not done, older than any seen: nothing is known
    chances = [durations.done_probability(12.0, age) for age in range(12, 22)]
    assert chances == sorted(chances)


# -- ages and durations of a Task -----------------------------------------------------------------


@pytest.mark.parametrize("skew", [0.0, 5 * 3600.0, -7 * 3600.0])
def test_the_age_is_read_on_the_servers_clock_alone(skew: float) -> None:
    # A server hours ahead of or behind ours: its Date and its createdAt move together.
    local = datetime.datetime.now(datetime.UTC).timestamp()
    task = make_task("processing", created_at=_moment(local + skew - 42.5))
    assert age_of(task, local + skew) == pytest.approx(42.5)
    assert age_of(task, local + skew - 60) == 0.0  # a Date before createdAt: no negative age
    assert age_of(task, None) is None
    assert age_of(make_task("processing"), local) is None  # no createdAt


def test_a_duration_is_finished_at_minus_created_at_of_a_finished_task() -> None:
    created = _moment(SERVER_CLOCK)
    finished = _moment(SERVER_CLOCK + 75.25)
    assert duration_of(make_task("completed", created_at=created, finished_at=finished)) == 75.25
    assert duration_of(make_task("failed", created_at=created, finished_at=finished)) == 75.25
    assert duration_of(make_task("processing", created_at=created, finished_at=finished)) is None
    assert duration_of(make_task("completed", created_at=created)) is None
    assert duration_of(make_task("completed", finished_at=finished)) is None
    assert duration_of(make_task("completed", created_at=finished, finished_at=created)) is None  # negative


# -- the scheduler, on a virtual clock ------------------------------------------------------------


def test_a_client_that_knows_the_durations_skips_the_polls_that_cannot_see_the_task_done() -> None:
    fresh, learned = World({REF: (0.0, 15.0)}), World({REF: (0.0, 15.0)})
    assert _wait(fresh, _state()).succeeded
    assert _wait(learned, _state(UNIFORM)).succeeded
    assert _gaps(fresh.times()) == OLD_CURVE  # 0, 1.5, 3.75, 7.1, 12.1 then 17.1: seen done
    polls = learned.times()
    assert len(polls) < len(fresh.times())
    assert [t for t in polls if 0 < t < 10] == []  # nothing can finish before 10 s
    assert polls[-1] >= 15.0


def test_adaptive_jitter_spreads_polls_both_ways_around_the_plan_and_keeps_its_mean() -> None:
    planned = World({REF: (0.0, 100.0)})
    _wait(planned, _state(UNIFORM), ADAPTIVE)
    first_pause = _gaps(planned.times())[0]
    pauses = []
    for seed in range(200):
        world, state = World({REF: (0.0, 100.0)}), _state(UNIFORM)
        state.rng = random.Random(seed)
        _wait(world, state, PollPolicy.adaptive(latency=2.5))  # jitter 0.1
        pauses.append(_gaps(world.times())[0])
    assert min(pauses) < first_pause < max(pauses)
    assert 0.95 * first_pause <= min(pauses)
    assert max(pauses) <= 1.05 * first_pause
    assert abs(statistics.fmean(pauses) / first_pause - 1) < 0.01


@pytest.mark.parametrize("known", [0, 1, 19])
def test_until_twenty_durations_are_known_polls_follow_the_old_curve(known: int) -> None:
    world = World({REF: (0.0, 15.0)})
    _wait(world, _state(UNIFORM[:known]))
    assert _gaps(world.times()) == OLD_CURVE


def test_a_fixed_policy_keeps_its_meaning_whatever_was_learned() -> None:
    world = World({REF: (0.0, 15.0)})
    _wait(world, _state(UNIFORM), PollPolicy.fixed(2.0))
    assert _gaps(world.times()) == [2.0] * 8  # 0, 2, ... 16: seen done


@pytest.mark.parametrize("skew", [0.0, 9 * 3600.0, -9 * 3600.0])
def test_the_age_comes_from_the_servers_date_and_created_at(skew: float) -> None:
    # The task was 6 s old when first seen: its next poll is placed from age 6, not 0.
    learned = _durations(UNIFORM)
    from_six, from_zero = learned.next_delay(6.0, 2.5), learned.next_delay(0.0, 2.5)
    assert from_six is not None
    assert from_zero is not None
    world = World({REF: (-6.0, 15.0)}, skew=skew)
    _wait(world, _state(UNIFORM))
    first, second = world.times()[:2]
    assert second - first == pytest.approx(from_six)
    assert second - first < from_zero - 3  # from age 0, it would come 4 s later


def test_the_age_is_the_oldest_that_the_whole_second_dates_say() -> None:
    # Created 6.7 s before the call began. A Date is whole seconds: read at 0.95 s, the task looks
    # 0.95 s younger than it is; read again at a moment nearer its second's start, less so.
    learned = _durations(UNIFORM)
    world = World({REF: (-6.7, 19.5)})
    _wait(world, _state(UNIFORM), start=0.95)
    first, second, third = world.times()[:3]
    assert second - first == pytest.approx(learned.next_delay(6.7, 2.5))
    assert second % 1 < 0.8  # the second Date is nearer the truth than the first
    age = second + 6.7 - second % 1  # what the second answer says
    assert third - second == pytest.approx(learned.next_delay(age, 2.5))
    assert third - second != pytest.approx(learned.next_delay(second + 6.7 - 0.95, 2.5))  # from the first alone


def test_without_date_or_created_at_the_age_counts_from_when_the_call_began() -> None:
    learned = _durations(UNIFORM)
    world = World({REF: (-6.0, 15.0)}, dated=False)
    _wait(world, _state(UNIFORM), start=0.0)
    first, second = world.times()[:2]
    assert second - first == pytest.approx(learned.next_delay(0.0, 2.5))


def test_a_batch_learns_its_durations_when_it_ends() -> None:
    # Learnt mid-batch, the durations would be only the short ones: those that finished first.
    refs = [mountsea.TaskRef("producer", f"t{i}") for i in range(MIN_SAMPLES)]
    world = World({ref: (0.0, 1.0 + i) for i, ref in enumerate(refs)})
    state = _state()
    scheduler = Scheduler(refs, call=_call(PollPolicy.fixed(1.0), single=False), state=state, now=0.0)
    now = 0.0
    while not (plan := scheduler.plan(now)).done:
        assert not state.durations["producer"].ready
        for tracked, _ in plan.send:
            task, headers = world.answer(tracked.ref, now)
            scheduler.record(tracked, task, now, headers)
        if not (plan.send or plan.ready):
            now += plan.wait or 0.0
    assert now == MIN_SAMPLES  # the last finished at 20 s
    assert state.durations["producer"].ready
    assert state.durations["producer"].next_delay(0.0, 2.5) is not None


def test_a_batch_of_any_size_keeps_a_bounded_sample_of_what_it_read_to_learn() -> None:
    refs = [mountsea.TaskRef("producer", f"t{i}") for i in range(10 * SAMPLES)]
    world = World({ref: (-float(i), float(i)) for i, ref in enumerate(refs)})  # all done, each took i seconds
    state = _state()
    scheduler = Scheduler(refs, call=_call(single=False), state=state, now=0.0, max_concurrency=len(refs))
    for tracked, _ in scheduler.plan(0.0).send:
        task, headers = world.answer(tracked.ref, 0.0)
        scheduler.record(tracked, task, 0.0, headers)
    assert len(scheduler._learned) == SAMPLES  # of the 2,000 read, while the batch runs
    while not scheduler.plan(0.0).done:
        pass
    learned = list(state.durations["producer"]._sorted)
    assert len(learned) == SAMPLES
    assert 700 < statistics.fmean(learned) < 1300  # uniform over the batch's durations, 0-1,999 s


def test_a_task_read_again_and_again_teaches_its_duration_once() -> None:
    state, finished = _state(), World({REF: (0.0, 10.0)})
    get = Call(until_done=False, single=True, deadline=None, policy=ADAPTIVE, max_retries=2)
    for visit in range(3 * MIN_SAMPLES):  # a status page asking for it on every visit
        run(finished, Scheduler([REF], call=get, state=state, now=100.0 + visit), start=100.0 + visit)
    assert len(finished.sent) == 3 * MIN_SAMPLES
    assert not state.durations["producer"].ready  # one duration, not sixty copies of it
    for i in range(MIN_SAMPLES - 1):
        other = mountsea.TaskRef("producer", f"other-{i}")
        run(World({other: (0.0, 20.0)}), Scheduler([other], call=get, state=state, now=200.0), start=200.0)
    assert state.durations["producer"].ready


@pytest.mark.parametrize("method", ["get", "wait"])
def test_single_calls_learn_at_once(method: str) -> None:
    state = _state()
    for i in range(MIN_SAMPLES):
        ref = mountsea.TaskRef("producer", f"t{i}")
        call = (
            _call()
            if method == "wait"
            else Call(until_done=False, single=True, deadline=None, policy=ADAPTIVE, max_retries=2)
        )
        assert not state.durations["producer"].ready
        run(World({ref: (0.0, 10.0 + i)}), Scheduler([ref], call=call, state=state, now=100.0), start=100.0)
    assert state.durations["producer"].ready
    assert not state.durations["xai"].ready  # per service


def test_max_rate_spaces_the_requests_of_every_call_and_service() -> None:
    producer = [mountsea.TaskRef("producer", f"p{i}") for i in range(6)]
    xai = [mountsea.TaskRef("xai", f"x{i}") for i in range(6)]
    world = World(dict.fromkeys(producer + xai, (0.0, 0.0)))  # all done: one request each
    state = _state(max_rate=4)
    calls = [
        Scheduler(refs, call=_call(single=False), state=state, now=0.0, max_concurrency=16) for refs in (producer, xai)
    ]
    done = run(world, *calls)
    assert len(done) == 12
    times = [now for now, _ in world.sent]
    assert len(times) == 12
    assert min(_gaps(times)) >= 0.25  # a token every 1/4 s, shared by both calls
    assert times[-1] == pytest.approx(11 * 0.25)


def test_when_the_rate_binds_tasks_nothing_is_known_of_still_get_their_turn() -> None:
    """Tasks older than any duration learned, and a service with none learned, share the tokens: none starves."""
    stuck = [mountsea.TaskRef("producer", f"p{i}") for i in range(10)]
    fresh = mountsea.TaskRef("xai", "x")
    world = World({**dict.fromkeys(stuck, (-100.0, 1000000.0)), fresh: (0.0, 1e6)})
    state = _state(UNIFORM, max_rate=1)
    call = _call(PollPolicy.fixed(1.0), single=False)
    scheduler, now = Scheduler([*stuck, fresh], call=call, state=state, now=0.0, max_concurrency=1), 0.0
    for _ in range(10_000):  # bounded: a scheduler that stops advancing fails, it does not hang
        plan = scheduler.plan(now)
        for tracked, _ in plan.send:
            task, headers = world.answer(tracked.ref, now)
            scheduler.record(tracked, task, now, headers)
        if not plan.send:
            assert plan.wait is not None
            now += plan.wait
        if now >= 60:
            break
    assert len(world.sent) == pytest.approx(60, abs=2)  # one token a second
    assert len(world.times(fresh)) >= 4  # its share of 11, not its first look alone


def test_when_the_rate_binds_the_due_tasks_most_likely_done_go_first() -> None:
    t0, t1, t2 = refs = [mountsea.TaskRef("producer", f"t{i}") for i in range(3)]
    # First seen at 0, 1 and 2 s, then 11, 16 and 0 s old; none finishes here.
    world = World({t0: (-11.0, 1e6), t1: (-15.0, 1e6), t2: (2.0, 1e6)})
    state = _state(UNIFORM, max_rate=1)
    scheduler = Scheduler(
        refs, call=_call(PollPolicy.fixed(1.0), single=False), state=state, now=0.0, max_concurrency=3
    )
    for now in (0.0, 1.0, 2.0, 4.0):  # a slow driver: by 4 s all three are due, one token to spend
        plan = scheduler.plan(now)
        [(tracked, _)] = plan.send
        task, headers = world.answer(tracked.ref, now)
        scheduler.record(tracked, task, now, headers)
    # First looks first (t1 and t2 though t0 was due), then the likeliest done: t1, 19 s old of 10-20 s (earliest due, t0 would go).
    assert [ref for _, ref in world.sent] == [t0, t1, t2, t1]
    likely = {
        ref: state.durations["producer"].done_probability(since, 4.0 - born)
        for ref, since, born in ((t0, 11, -11), (t1, 16, -15), (t2, 0, 2))
    }
    assert max(likely, key=likely.__getitem__) == t1
    assert likely[t0] > likely[t2]


def test_when_the_rate_binds_a_plan_ranks_the_longest_due_alone_however_many_are_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ranking every due task for each token costs as much as the batch is big: a plan ranks `RANKED` at most."""
    refs = [mountsea.TaskRef("producer", f"t{i}") for i in range(3 * RANKED)]
    world = World(dict.fromkeys(refs, (0.0, 1e6)))  # none finishes
    state = _state(UNIFORM, max_rate=1000)
    scheduler = Scheduler(refs, call=_call(PollPolicy.fixed(1.0), single=False), state=state, now=0.0)
    scheduler.max_concurrency = len(refs)
    now = 0.0
    while len(world.sent) < len(refs):  # the first looks, a token (1 ms) each
        plan = scheduler.plan(now)
        for tracked, _ in plan.send:
            task, headers = world.answer(tracked.ref, now)
            scheduler.record(tracked, task, now, headers)
        now += plan.wait or 0.0
    ranked: list[float] = []
    rank = Durations.done_probability
    monkeypatch.setattr(Durations, "done_probability", lambda self, *ages: ranked.append(ages[1]) or rank(self, *ages))
    plan = scheduler.plan(now + 5)  # all of them due again, a token to spend
    assert 0 < len(plan.send) < len(refs)
    assert len(ranked) == RANKED


def test_no_task_is_polled_more_than_twice_a_second_whatever_the_jitter() -> None:
    world = World({REF: (0.0, 30.0)})
    _wait(world, _state([1.0 + 0.01 * i for i in range(40)]), PollPolicy(latency=0.1, jitter=0.9))
    assert min(_gaps(world.times())) >= MIN_DELAY
