"""Small legal, support and code texts shared by the ingest tests."""

LEGAL = """MASTER SERVICES AGREEMENT

1. Definitions.

"Customer Data" means all data submitted by Customer to the Service, including any personal data
processed on behalf of Customer.

"Service" means the hosted software described in the Order Form.

2. Fees and Payment.

2.1 Customer shall pay all fees within thirty (30) days of the invoice date. Late payments bear
interest at one percent per month.

2.2 Taxes. Fees exclude taxes; Customer shall pay all sales and use taxes.

3. Confidentiality.

(a) Each party shall protect the other party's Confidential Information with reasonable care.

(b) Neither party shall disclose Confidential Information except to its employees who need to know.

4. Termination. Either party may terminate this Agreement upon thirty days written notice if the
other party materially breaches it and fails to cure the breach within that period.
"""

SUPPORT = """# Help centre

## Resetting your password

How do I reset my password?

Open Settings, choose Security and click "Reset password". A link is e-mailed to you and stays valid
for one hour.

## Billing

Why was I charged twice?

A second charge is usually a pending authorisation that disappears within three business days.
"""

CODE = '''"""Tiny module for tests."""

import os


def add(a, b):
    """Return the sum of a and b."""
    return a + b


class Greeter:
    """Says hello."""

    def __init__(self, name):
        self.name = name

    def greet(self):
        """Greet by name."""
        return f"hello {self.name}"
'''
