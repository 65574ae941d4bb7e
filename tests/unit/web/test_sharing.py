"""One model shared fairly: the lock's hand-over order, admission's bound, a job's view of the model."""

from __future__ import annotations

import threading
import time

import numpy as np
from web_helpers import KnownObjectsDetector

from rtseg.web.sharing import Admission, FairLock, FilteredDetector, SharedModel


def wait_until_waiting(lock: FairLock, count: int) -> None:
    deadline = time.monotonic() + 10
    while lock.waiting < count:
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.001)


def test_the_lock_goes_to_the_waiter_before_the_releaser_takes_it_again():
    lock, order = FairLock(), []
    lock.acquire()
    waiter = threading.Thread(target=lambda: (lock.acquire(), order.append("waiter"), lock.release()))
    waiter.start()
    wait_until_waiting(lock, 1)
    lock.release()
    with lock:  # the video job's next model call, at once: it queues behind the image request
        order.append("releaser")
    waiter.join(10)
    assert order == ["waiter", "releaser"]


def test_waiters_get_the_lock_in_arrival_order():
    lock, order = FairLock(), []
    lock.acquire()
    threads = []
    for name in "abcd":
        thread = threading.Thread(target=lambda n=name: (lock.acquire(), order.append(n), lock.release()))
        thread.start()
        wait_until_waiting(lock, len(threads) + 1)
        threads.append(thread)
    lock.release()
    for thread in threads:
        thread.join(10)
    assert order == list("abcd") and lock.waiting == 0
    assert lock._held is False  # free again: the next acquire does not wait


def test_admission_refuses_beyond_its_capacity_and_frees_slots():
    admission = Admission(2)
    assert admission.try_enter() and admission.try_enter()
    assert not admission.try_enter()
    admission.leave()
    assert admission.try_enter()


def test_a_jobs_view_keeps_its_score_floor_and_classes():
    model = SharedModel(KnownObjectsDetector())
    image = np.zeros((40, 60, 3), np.uint8)
    assert [len(d) for d in FilteredDetector(model, 0.5, None).detect([image, image])] == [2, 2]
    (high,) = FilteredDetector(model, 0.7, None).detect([image])
    assert high.names() == ["square"] and high.masks.shape == (1, 40, 60)
    (discs,) = FilteredDetector(model, 0.0, [2]).detect([image])
    assert discs.names() == ["disc"]
    assert model.detector.calls == 3
