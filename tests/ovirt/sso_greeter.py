"""A fake GNOME Shell greeter: runs the gdm-ovirtcred-like PAM stack answering with a token.

Run with the system python under pam_wrapper: ``sso_greeter.py SERVICE USER TOKEN``
(USER may be "-" for a greeter that does not know the user yet). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys

import pypamtest


def main() -> None:
    """Authenticate and report the outcome."""
    service, user, token = sys.argv[1], sys.argv[2], sys.argv[3]
    tests = [pypamtest.TestCase(pypamtest.PAMTEST_AUTHENTICATE)]
    try:
        pypamtest.run_pamtest("" if user == "-" else user, service, tests, [token])
    except pypamtest.PamTestError as err:
        sys.stdout.write(json.dumps({"ok": False, "error": str(err)}) + "\n")
        return
    sys.stdout.write(json.dumps({"ok": True}) + "\n")


if __name__ == "__main__":
    main()
