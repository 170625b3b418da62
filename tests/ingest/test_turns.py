from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from app.ingest.turns import Turns

WAIT = 5.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)


def waiting(turns: Turns) -> int:
    """Threads queued for a slot (the queue itself: nothing public says when a thread has joined it)."""
    return len(turns._waiting)


def test_freed_slots_go_to_waiting_threads_in_the_order_they_came():
    turns = Turns(1)
    order: list[int] = []

    def take(number: int) -> None:
        with turns:
            order.append(number)

    turns.__enter__()
    threads = []
    for number in range(6):
        thread = threading.Thread(target=take, args=(number,))
        thread.start()
        threads.append(thread)
        wait_until(lambda number=number: waiting(turns) == number + 1, f"thread {number} waits")
    turns.__exit__(None, None, None)
    for thread in threads:
        thread.join(WAIT)

    assert order == list(range(6))


def test_a_thread_arriving_as_a_slot_frees_does_not_take_it_from_one_that_waited():
    """threading.Semaphore lets the newcomer in first when it runs before the woken waiter does."""
    turns = Turns(1)
    events: list[str] = []

    def waiter() -> None:
        with turns:
            events.append("waiter in")
            time.sleep(0.05)
            events.append("waiter out")

    def newcomer() -> None:
        with turns:
            events.append("newcomer in")

    turns.__enter__()
    first = threading.Thread(target=waiter)
    first.start()
    wait_until(lambda: waiting(turns) == 1, "the waiter waits")
    turns.__exit__(None, None, None)
    second = threading.Thread(target=newcomer)  # starts before the waiter has woken, as a rule
    second.start()
    first.join(WAIT)
    second.join(WAIT)

    assert events == ["waiter in", "waiter out", "newcomer in"]


@pytest.mark.parametrize("slots", [1, 3])
def test_never_more_holders_than_slots_and_every_thread_gets_its_turn(slots: int):
    turns = Turns(slots)
    lock = threading.Lock()
    holders = most = done = 0

    def take() -> None:
        nonlocal holders, most, done
        with turns:
            with lock:
                holders += 1
                most = max(most, holders)
            time.sleep(0.002)
            with lock:
                holders -= 1
                done += 1

    threads = [threading.Thread(target=take) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert done == 24
    assert most == slots


def test_a_slot_is_given_back_when_the_holder_raises():
    turns = Turns(1)
    with pytest.raises(ValueError), turns:
        raise ValueError("the body was bad")

    taken = threading.Event()
    thread = threading.Thread(target=lambda: (turns.__enter__(), taken.set()))
    thread.start()

    assert taken.wait(WAIT)
