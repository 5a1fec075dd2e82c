"""The tiny corpus of the gdn2_rag/ tests: a contract, a help page and a code module."""

CONTRACT = """SERVICE AGREEMENT

1. Definitions
In this Agreement the Customer means the party buying the services.
The Provider means Acme Hosting Ltd.

2. Term and Termination
This Agreement starts on the Effective Date and runs for twelve months.
Either party may terminate this Agreement by giving ninety days written notice to the other party.
Termination does not affect fees already due.

3. Fees
The Customer pays the monthly fee within thirty days of each invoice.
Late payments carry interest of two percent per month.

4. Governing Law
This Agreement is governed by the laws of the State of Delaware.
"""

HELP_PAGE = """# Resetting your password

If you forgot your password, open the login page and click "Forgot password".
We send a reset link to your registered e-mail address.
The reset link expires after 45 minutes; request a new one if it has expired.

## Two-factor authentication

To turn on two-factor authentication, open Settings, then Security, and scan the QR code.
Backup codes can be downloaded once from the same page.
"""

CODE_MODULE = '''"""Retry helpers for flaky network calls."""

import time


def backoff_delays(base, attempts):
    """Exponential backoff: base, 2*base, 4*base, ... for the given number of attempts."""
    return [base * 2 ** i for i in range(attempts)]


def retry(fn, attempts=5, base=0.5):
    """Call fn until it succeeds, sleeping between tries; re-raises the last error."""
    for delay in backoff_delays(base, attempts):
        try:
            return fn()
        except ConnectionError:
            time.sleep(delay)
    return fn()
'''
