"""Claim-by-claim tests: ONE parametrized test per claim kind, the claim id as the test id.

Judged against the results set of `--results` (default `paper`). Not run and inconclusive claims
skip with the reason; claims the paper's own evidence contradicts are strict xfails.
"""

from __future__ import annotations

import pytest

from harness.claimkinds import KINDS
from harness.pytest_plugin import check_claim, claim_params

pytestmark = pytest.mark.claims


def _claim_test(kind: str):
    @pytest.mark.parametrize("claim", claim_params(kind))
    def test(claim, claims_context, request):
        check_claim(claim, claims_context, request.config)

    test.__name__ = f"test_{kind}"
    test.__doc__ = f"Every `{kind}` claim of expected_results/ holds for the results set."
    return test


# One test function per claim kind, so a kind registered in harness.claimkinds gets its test too.
for _kind in KINDS:
    globals()[f"test_{_kind}"] = _claim_test(_kind)
del _kind
