"""`clarity ui`: serve the local web page over this project's store (see `clarity.ui`).

It starts on a project without a store too (the page says there is none and fills in once a session
makes it); it creates nothing by itself. The URL with the token is the first line on stdout.
"""

from __future__ import annotations

import argparse

from clarity.cli.output import note
from clarity.cli.store_access import no_store, store_exists
from clarity.config import Settings, load_settings
from clarity.errors import ConfigError


def cmd_ui(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.ui.app import serve
    from clarity.ui.backend import Backend

    if not 0 <= a.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, not {a.port}")
    if not store_exists(settings):
        note(no_store(settings) + "; the page shows it once it exists")
    backend = Backend(settings, lambda: load_settings(a.home))
    try:
        serve(settings, backend, port=a.port, open_browser=a.open)
    except OSError as e:
        raise ConfigError(f"cannot listen on 127.0.0.1:{a.port}: {e.strerror or e}") from None
    finally:
        backend.close()
    return 0
