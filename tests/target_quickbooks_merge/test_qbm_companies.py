"""Many companies in one PostgreSQL ledger: a company's rows belong to the Merge linked account its first run used,
so a run whose account_token is another company's is refused before it reads or writes anything of either."""

from __future__ import annotations

import pytest

from sandbox.merge_state import LinkedAccount
from target_quickbooks_merge.target import LINKED_ACCOUNT_META, TargetError
from tests.target_quickbooks_merge.qbm_helpers import Pipeline, qbo_customers


@pytest.fixture
def shared(pipeline: Pipeline, pg_url: str) -> Pipeline:
    pipeline.ledger_path = pg_url
    pipeline.config["company"] = "acme"
    app = pipeline.merge.app
    app.state.accounts["globex-token"] = LinkedAccount(
        token="globex-token",
        end_user_origin_id="globex",
        end_user_organization_name="Globex Heating",
        end_user_email_address="owner@globex.example",
    )
    return pipeline


def test_a_company_is_bound_to_its_linked_account(shared: Pipeline) -> None:
    first = shared.run()
    assert first.counts["projects"]["created"] > 0
    acme_account = shared.merge.app.state.accounts[shared.merge.account_token].id
    with shared.ledger() as ledger:
        assert ledger.get_meta(LINKED_ACCOUNT_META) == acme_account
        links = len(ledger.links())
    customers = len(qbo_customers(shared.merge))

    with pytest.raises(TargetError) as info:  # company acme, but Globex's token
        shared.run(account_token="globex-token")
    message = str(info.value)
    globex_account = shared.merge.app.state.accounts["globex-token"].id
    assert acme_account in message and globex_account in message and "'acme'" in message
    assert len(qbo_customers(shared.merge)) == customers  # nothing written
    with shared.ledger() as ledger:
        assert len(ledger.links()) == links
        assert ledger.get_meta(LINKED_ACCOUNT_META) == acme_account  # not taken over
        assert ledger.runs(1)[0]["status"] == "refused"

    shared.config["company"] = "globex"  # Globex's own company: its first run binds it
    shared.run(account_token="globex-token", dry_run=True)
    with shared.ledger() as ledger:
        assert ledger.get_meta(LINKED_ACCOUNT_META) is None  # a dry run records nothing
        assert ledger.links() == []  # and sees none of acme's links


def test_without_company_a_new_link_takes_over_with_a_warning(pipeline: Pipeline) -> None:
    """One company per ledger (no `company`): reconnecting gives a new linked account, which takes over."""
    pipeline.run()
    app = pipeline.merge.app
    app.state.accounts["relinked"] = LinkedAccount(
        token="relinked", end_user_origin_id="sandbox-org", end_user_organization_name="Same", end_user_email_address=""
    )
    again = pipeline.run(account_token="relinked")
    assert again.target.result is not None and again.target.result.failed == 0
    with pipeline.ledger() as ledger:
        assert ledger.get_meta(LINKED_ACCOUNT_META) == app.state.accounts["relinked"].id
