"""engine.lru.BoundedLRU: bounded, most recently used kept, safe across threads."""

from __future__ import annotations

import threading

import pytest

from engine.ahead import ImageGuesses
from engine.lru import BoundedLRU


def test_past_its_size_the_least_recently_used_goes() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a used: b is the oldest now
    lru.put("c", 3)
    assert lru.keys() == ["a", "c"] and lru.get("b") is None and len(lru) == 2


def test_a_put_replaces_and_refreshes() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.put("a", 9)
    lru.put("c", 3)
    assert lru.keys() == ["a", "c"] and lru.get("a") == 9


def test_it_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError):
        BoundedLRU(0)


def test_many_threads_never_grow_it_past_its_size() -> None:
    lru: BoundedLRU[int, int] = BoundedLRU(50)

    def writer(base: int) -> None:
        for i in range(2_000):
            lru.put(base + i, i)
            lru.get(base + i // 2)

    threads = [threading.Thread(target=writer, args=(k * 10_000,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lru) == 50 and len(set(lru.keys())) == 50


def test_image_guesses_remember_each_instructions_last_image() -> None:
    guesses = ImageGuesses(size=2)
    guesses.ran(1, "sha256:aa")
    guesses.ran(2, "sha256:bb")
    guesses.ran(1, "sha256:cc")  # the instruction's image changed: the newest is kept
    guesses.ran(3, "sha256:dd")
    assert (guesses.get(1), guesses.get(2), guesses.get(3)) == ("sha256:cc", None, "sha256:dd")
