"""The logins of tests/data/ivr.test.yml, for tests and the benchmark.

TEST-ONLY credentials: the passwords are public in this repository, the
hashes in ivr.test.yml are made from them. Never use them in a real ivr.yml.
"""

from __future__ import annotations

import aiohttp

DE, UK = "+4930123456", "+442071234567"

PASSWORDS: dict[str, str] = {
    "anna": "anna-test-pw",  # agent, DE, queues muster-general/-orders/-complaints
    "ben": "ben-test-pw",  # agent, DE
    "carl": "carl-test-pw",  # agent, UK
    "sue": "sue-test-pw",  # supervisor, DE
    "root": "root-test-pw",  # admin, all tenants
}
ANNA_PASSWORD = PASSWORDS["anna"]
BEN_PASSWORD = PASSWORDS["ben"]
CARL_PASSWORD = PASSWORDS["carl"]
SUE_PASSWORD = PASSWORDS["sue"]
ROOT_PASSWORD = PASSWORDS["root"]


def basic(username: str = "root") -> aiohttp.BasicAuth:
    """HTTP Basic credentials of a test user (default: the admin, who sees every tenant)."""
    return aiohttp.BasicAuth(username, PASSWORDS[username])
