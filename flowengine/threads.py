"""The loop's executor: threads for the odd blocking call, which end when it is done.

asyncio runs a blocking call in the loop's default executor: `loop.getaddrinfo` for a
host name (an MQTT broker at `localhost`, a Shelly by name, the libraries' own
connects), `asyncio.to_thread`, `run_in_executor(None, ...)`. Its stock executor is a
`ThreadPoolExecutor`, whose threads stay for the life of the process once started,
idle, each with its stack and its malloc arena, for calls made once a start or once a
DNS lifetime. `TransientExecutor` starts a worker when a call comes (up to
`max_workers` at once; later calls wait in a queue) and lets it end as soon as the
queue is empty, so a runtime that resolved its hosts at start runs on one thread again.

`run` installs it with `install(loop)`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MAX_WORKERS", "TransientExecutor", "install"]

MAX_WORKERS = 4
T = TypeVar("T")
_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...],
             dict[str, Any]]


class TransientExecutor(concurrent.futures.ThreadPoolExecutor):
    """An executor whose worker threads end when no call waits.

    A ThreadPoolExecutor only by class (asyncio takes no other as the default): its
    own queue and threads are never used."""

    def __init__(self, max_workers: int = MAX_WORKERS, *,
                 name: str = "esess-blocking-call") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        super().__init__(max_workers, thread_name_prefix=name)  # starts no thread
        self.max_workers = max_workers
        self._name = name
        self._jobs: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self._workers = 0
        self._started = 0  # workers ever started, for their names
        self._shut = False

    @property
    def workers(self) -> int:
        """Worker threads running now."""
        return self._workers

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.append((future, fn, args, kwargs))
            if self._workers >= self.max_workers:
                return future  # a running worker takes it when it is done
            self._workers += 1
            self._started += 1
            name = f"{self._name}-{self._started}"
        try:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        except BaseException:  # no thread to be had: the call fails, nothing waits forever
            with self._lock:
                self._workers -= 1
                self._all_done.notify_all()
                if self._workers == 0:
                    self._fail_waiting(RuntimeError("cannot start a thread"))
            raise
        return future

    def _fail_waiting(self, exc: BaseException) -> None:
        while self._jobs:
            future = self._jobs.popleft()[0]
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._workers -= 1
                    self._all_done.notify_all()
                    return
                future, fn, args, kwargs = self._jobs.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller, as ThreadPoolExecutor does
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, fn, args, kwargs  # nothing of a call outlives it in this thread

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut = True
            if cancel_futures:
                while self._jobs:
                    self._jobs.popleft()[0].cancel()
            if wait:
                while self._workers:
                    self._all_done.wait()


def install(loop: asyncio.AbstractEventLoop | None = None) -> TransientExecutor:
    """Make a `TransientExecutor` the default executor of `loop` (the running one)."""
    executor = TransientExecutor()
    (loop or asyncio.get_running_loop()).set_default_executor(executor)
    return executor
