"""Makes this interpreter look, to Clarity's platform layer, like one on macOS or a BSD.

Put this folder first on PYTHONPATH (`.ci/run` does, for its second pass over the coordination, chaos,
security and standby tests). Python imports `sitecustomize` at start-up, in every process that
inherits the variable (`clarity serve` sessions, index-build and migration children, lock holders
started by the tests), so every process of the run picks the same backends:

- `fcntl` loses `F_OFD_GETLK`, `F_OFD_SETLK` and `F_OFD_SETLKW`, as on macOS and the BSDs: the lock
  backend is `flock` (`clarity.platform.locks`);
- `os` loses `posix_fadvise`, as on macOS: the page-cache backend is `none`.

What it cannot take away, so it stays Linux's in that pass: `SO_PEERCRED` (Linux has no
`LOCAL_PEERCRED` to fall back on), `/proc` (the `ps` backend of `clarity.platform.processes` is tested
directly), `prctl` (the `watchdog` backend of `clarity.platform.children` is tested directly) and
glibc's `malloc_trim`. Nothing here changes Clarity's code: it only removes names, as an interpreter
built for those systems lacks them.
"""

import fcntl
import os

for _name in ("F_OFD_GETLK", "F_OFD_SETLK", "F_OFD_SETLKW"):
    if hasattr(fcntl, _name):
        delattr(fcntl, _name)
if hasattr(os, "posix_fadvise"):
    del os.posix_fadvise
