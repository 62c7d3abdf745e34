"""The golden scripts' command line: `--check` regenerates into a temporary directory and compares
the bytes with the committed files instead of writing them."""

from __future__ import annotations

import argparse


def check_flag(doc: str) -> bool:
    """Parses the command line of a golden script (its docstring as the help text): --check given."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary directory and compare bytes with the committed files")
    return bool(ap.parse_args().check)
