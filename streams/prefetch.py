"""Run a frame generator in its own thread so that reading overlaps the consumer's work."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator
from typing import Generic, TypeVar

T = TypeVar("T")


class Prefetch(Generic[T]):
    """Items of a generator, produced in a daemon thread and handed over through a small buffer.

    Files want every item: the producer blocks while ``depth`` items wait. Live sources want the
    newest item: the producer never waits, a new item replaces the one still waiting, and
    ``dropped`` counts the replaced ones. An exception in the producer is raised in the consumer
    after the items produced before it. The generator is closed in the producer thread, so
    whatever it holds open (a container, a device) is released by the thread that used it.
    """

    def __init__(
        self, items: Generator[T, None, None], *, depth: int = 4, newest_wins: bool = False
    ) -> None:
        self.dropped = 0
        self._items = items
        self._depth = 1 if newest_wins else depth
        self._newest_wins = newest_wins
        self._buffer: deque[T] = deque()
        self._changed = threading.Condition()
        self._done = False
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        error = None
        try:
            for item in self._items:
                if not self._put(item):
                    break
        except BaseException as raised:  # handed to the consumer, which decides what it means
            error = raised
        finally:
            self._items.close()
            with self._changed:
                self._error = error
                self._done = True
                self._changed.notify_all()

    def _put(self, item: T) -> bool:
        """Queue ``item``; False once the consumer has stopped listening."""
        with self._changed:
            if self._newest_wins and self._buffer:
                self._buffer.popleft()
                self.dropped += 1
            while len(self._buffer) >= self._depth and not self._stopped:
                self._changed.wait()
            if self._stopped:
                return False
            self._buffer.append(item)
            self._changed.notify_all()
            return True

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        with self._changed:
            while not (self._buffer or self._done or self._stopped):
                self._changed.wait()
            if self._buffer:
                item = self._buffer.popleft()
                self._changed.notify_all()
                return item
            error, self._error = self._error, None
        if error is not None and not self._stopped:
            raise error
        raise StopIteration

    def close(self, timeout: float = 1.0) -> None:
        """Stop the producer and wait up to ``timeout`` s for it to release what it holds.

        A producer blocked in a read (a stalled network stream) finishes on its own, after its
        read times out; it is a daemon thread, so it never keeps the process alive.
        """
        with self._changed:
            self._stopped = True
            self._buffer.clear()
            self._changed.notify_all()
        self._thread.join(timeout)
