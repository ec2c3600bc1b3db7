"""The hot standby: one non-owner `clarity serve` session that is ready to own the engine at once.

Who it is: the session holding the exclusive OFD lock on `standby.lock` in the coordination folder.
Every long-lived server (never a one-shot CLI command) is a candidate: a background thread tries
that lock every `coordination.standby_poll_s` while another process owns the lease and this one is
not the standby (with no owner at all nobody stands by: the first call decides the owner, as before).

What the standby does: it loads the embedding model (never the engine) into this process's service
host (`ServiceHost.preload_model`: the service built when it takes over uses that model), then its
thread waits in the kernel on the lease lock (`locks.FileLock.wait`, F_OFD_SETLKW). The kernel drops
a dead owner's lock when its last descriptor closes (after the dead process's memory is torn down)
and wakes the waiter, which then takes it; the other sessions do not try the lease for
`coordination.standby_grace_s` while a standby stands by (policies.py), so the standby holds the
lease as soon as it runs; it then writes the record, binds the owner socket and opens the engine
(`Ownership.take_over`). Calls arriving meanwhile wait on the operation lock, not in a retry.
Once owner (by this path or any other: `Ownership.on_taking_lease`), it releases `standby.lock`, and
another candidate becomes standby within `coordination.standby_poll_s`.

Its role is its own: `holds_role` (this process holds `standby.lock`) and `active` (standing by now)
are read by the policies and the coordinator; only this object writes them.

Guarantees:
- At most one standby at a time (the OFD lock); the other candidates import neither the model nor
  any engine library.
- A clean exit (`close`) releases `standby.lock` at once. A standby killed outright frees both of its
  locks with its descriptors, and the next candidate takes over the role.
- A thread blocked in the kernel wait cannot be interrupted: `close` does not join it (it is a daemon
  thread). If the wait returns after `close`, the lock it got is released at once, never used. A model
  load in progress is waited for by `Ownership.close` (`ServiceHost.finish_loading`).
Keeping the store warm: while it stands by, the standby asks the kernel every
`coordination.standby_warm_interval_s` to keep the store's current files in the page cache
(`clarity.platform.pagecache`: about 5 ms of CPU when they are cached already). Edge drops the files it
loads into memory from the page cache when it opens a shard (and all of them when it closes one), so
without this the next owner's open reads them from disk: measured on a 100k store, 0.9-1.4 s instead
of 0.4-0.55 s. Best effort: a file it cannot open is skipped.
Not guaranteed: a coordination folder deleted while a standby waits leaves it waiting on the old
lease lock until the old owner lets go (then it notices and starts over); meanwhile a candidate may
become standby in the new folder. And not that the standby wins the lease against a session that
tries it at the same instant (any winner is a valid owner; it loads the model itself, which costs
that failover a model load).
"""

from __future__ import annotations

import logging
import os
import threading

from clarity.config import Settings
from clarity.coordination.ownership import Ownership
from clarity.engines import store_files
from clarity.platform import locks
from clarity.platform.pagecache import will_need_tree

log = logging.getLogger(__name__)


def warm_store(settings: Settings) -> int:
    """Ask the kernel to read the store's current files into the page cache; returns how many regular
    files it asked for (`clarity.platform.pagecache`; symlinks and anything not a regular file are
    skipped; 0 where the platform has no such hint)."""
    root = store_files(settings)
    return will_need_tree(root) if root is not None else 0


class Standby:
    def __init__(self, owner: Ownership) -> None:
        """A candidate for the role; `start()` starts trying. It resigns whenever `owner` takes the lease."""
        self._owner = owner
        self._settings = owner.settings
        self._poll_s = owner.cfg.standby_poll_s
        self._warm_interval_s = owner.cfg.standby_warm_interval_s
        self._lease = owner.lease
        self.path = owner.lease.files.standby_lock
        self._lock: locks.FileLock | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting = False  # the model is loaded and the thread is (about to be) in the kernel wait
        self._warmer: threading.Thread | None = None
        owner.on_taking_lease(self.resign)

    @property
    def holds_role(self) -> bool:
        """This process holds `standby.lock` (its model may still be loading)."""
        return self._lock is not None

    @property
    def active(self) -> bool:
        """This process is the standby now: it holds standby.lock, its model is loaded, and its thread
        waits on the lease lock (it does not own the lease)."""
        return self._lock is not None and self._waiting and not self._owner.held

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="clarity-standby", daemon=True)
        self._thread.start()

    def resign(self) -> None:
        """Give up the role (this process became owner, or is closing)."""
        with self._mutex:
            lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()
            log.info("standby: released the standby role")

    def close(self) -> None:
        self._stop.set()
        self.resign()

    def _become_standby(self) -> bool:
        self._lease.ensure_dirs()
        lock = locks.FileLock(self.path)
        if not lock.try_lock(exclusive=True):
            return False
        with self._mutex:
            if self._stop.is_set():
                lock.close()
                return False
            self._lock = lock
        assert lock.fd is not None
        os.ftruncate(lock.fd, 0)  # who the standby is, for `clarity status` (informational only)
        os.pwrite(lock.fd, str(os.getpid()).encode(), 0)
        log.info("standby: this session is the hot standby")
        return True

    def _owner_exists(self) -> bool:
        """Someone holds the lease: there is an owner to stand by for (with none, the first call
        decides the owner, as without a standby)."""
        return locks.probe(self._lease.lock_path) is locks.LockState.EXCLUSIVE

    def _loop(self) -> None:
        own = self._owner
        while not self._stop.is_set():
            try:
                if own.held or own.closed or (self._lock is None and not (
                        self._owner_exists() and self._become_standby())):
                    self._stop.wait(self._poll_s)
                    continue
                if not own.services.preload_model():  # the model, handed to the service built at take-over
                    self._stop.wait(self._poll_s)  # closing
                    continue
                if self._warmer is None:
                    self._warmer = threading.Thread(target=self._warm_loop, name="clarity-standby-warm",
                                                    daemon=True)
                    self._warmer.start()
                lease_lock = locks.FileLock(self._lease.lock_path)
                self._waiting = True
                try:
                    lease_lock.wait(exclusive=True)  # returns the instant the owner's lock is gone
                finally:
                    self._waiting = False
                if self._stop.is_set() or own.closed or own.held or not lease_lock.still_ours():
                    lease_lock.close()  # closing, owner already, or the folder was replaced meanwhile
                    if self._lock is not None and not self._lock.still_ours():
                        self.resign()  # our standby.lock went with the old folder
                    continue
                log.info("standby: the lease was freed; taking over")
                if not own.take_over(lease_lock):
                    self._stop.wait(self._poll_s)
            except Exception:
                log.exception("standby: failed; retrying")
                self.resign()
                self._stop.wait(1.0)

    def _warm_loop(self) -> None:
        while not self._stop.wait(self._warm_interval_s):
            if self.active:
                try:
                    warm_store(self._settings)
                except Exception:  # noqa: BLE001 - best effort: the takeover works without it, slower
                    log.debug("standby: warming the store failed", exc_info=True)
