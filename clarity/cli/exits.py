"""Exit codes, and what a user can cause turned into one line on stderr instead of a traceback.

`handled(run)` runs a command and guarantees: a `NotFound` exits 1, any other `ClarityError` (bad input,
configuration, a busy store) 2, Ctrl-C 130, a reader of stdout that went away 1 (quietly), and an
`OSError` 1 with the file it names; each said in one line (`clarity: ...`) on stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from clarity.cli.output import note
from clarity.errors import ClarityError, NotFound

EXIT_NOT_DONE = 1  # not found, not done
EXIT_REFUSED = 2  # bad input, configuration, a busy store
EXIT_INTERRUPTED = 130  # Ctrl-C


def handled(run: Callable[[], int]) -> int:
    """`run()`'s exit code, or the one of the user's mistake it raised, said in one line."""
    try:
        return run()
    except NotFound as e:
        note(e.message)
        return EXIT_NOT_DONE
    except ClarityError as e:
        note(e.message)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (`clarity export | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_NOT_DONE
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        note(f"{where}{e.strerror or e}")
        return EXIT_NOT_DONE
