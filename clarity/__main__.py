"""`python -m clarity`. Run from the folder that holds a checkout named `clarity`, Python takes that
folder for the package (a namespace package without `__version__`, an ImportError deep in the CLI):
say so in one sentence with the fix instead."""

import sys

import clarity

if getattr(clarity, "__file__", None) is None:  # a namespace package: a folder named clarity, not ours
    shadow = next(iter(getattr(clarity, "__path__", [])), "./clarity")
    sys.stderr.write(f"clarity: the folder {shadow} (a checkout named clarity?) hides the installed clarity "
                     "package from `python -m clarity`: run it from another folder (such as inside that "
                     "checkout), or run the `clarity` command\n")
    raise SystemExit(2)

from clarity.cli import main  # noqa: E402 - only once the package is known to be the real one

raise SystemExit(main())
