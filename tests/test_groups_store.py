"""Groups and composed campaigns in the store, on SQLite and PostgreSQL: members in order,
replacement in one transaction, a composed campaign's audience (groups in order, each address
once, suppressions out), inline recipients, drafts started later, idempotency keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.intake.compose import CampaignRequest, create
from engine.plugins import builtin_plugins
from engine.store import Store
from engine.store.groups import GroupError
from engine.testing import write_config

KINDS = {"email": "email", "sms-long": "phone"}


def rows(*emails: str) -> list[tuple[object, ...]]:
    return [
        (i + 1, f"email:{e}", None, e.split("@")[0].title(), e, None, "{}", None, None)
        for i, e in enumerate(emails)
    ]


def members(store: Store, name: str) -> list[str | None]:
    return [m.email for m in store.groups.members(name, limit=100)]


def test_groups_and_composed_campaigns(store: Store, tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            accounts={"avisos": {"channel": "email", "sandbox": True, "from_address": "a@b.com"}},
        ),
        plugins=builtin_plugins(),
    )
    for name in ("g1", "g2"):
        store.groups.create(name, actor="t")
    with pytest.raises(GroupError, match="already exists"):
        store.groups.create("g1", actor="t")
    with store.groups.session() as s:
        s.stage(rows("ana@x.com", "bia@x.com"))  # type: ignore[arg-type]
        assert s.write_members("g1", replace=False, source="file", actor="t") == 2
    with store.groups.session() as s:
        s.stage(rows("bia@x.com", "cid@x.com", "dan@x.com"))  # type: ignore[arg-type]
        assert s.write_members("g2", replace=False, source="manual", actor="t") == 3
    with store.groups.session() as s:
        s.stage(rows("eva@x.com", "ana@x.com"))  # type: ignore[arg-type]
        assert s.write_members("g1", replace=False, source="manual", actor="t") == 3
    assert members(store, "g1") == ["ana@x.com", "bia@x.com", "eva@x.com"]
    store.suppressions.add("email", "dan@x.com", origin="manual", actor="t")
    assert store.groups.get("g2").suppressed == 1  # type: ignore[union-attr]

    request = CampaignRequest(
        account="avisos", groups=["g2", "g1"], subject="Oi {{ nome }}", html="<p>oi</p>"
    )
    cid, created = create(store, config, request, KINDS, actor="t")
    c = store.campaigns.get(cid)
    assert created and c is not None
    assert (c.recipients, c.counters["suppressed"], c.origin) == (5, 1, "operator")
    got = store.results.page(cid, limit=10)
    assert [r.address for r in got] == [
        "bia@x.com",
        "cid@x.com",
        "dan@x.com",
        "ana@x.com",
        "eva@x.com",
    ]
    assert store.groups.of_campaign(cid) == ["g2", "g1"]

    draft, _ = create(
        store, config, CampaignRequest(**{**request.__dict__, "draft": True}), KINDS, actor="t"
    )
    assert store.campaigns.get(draft).status == "draft"  # type: ignore[union-attr]
    assert draft not in [o.id for o in store.campaigns.open()]
    with store.groups.session() as s:
        s.stage(rows("fay@x.com"))  # type: ignore[arg-type]
        s.write_members("g2", replace=True, source="http", actor="t")
    assert members(store, "g2") == ["fay@x.com"]
    assert store.groups.start(draft, actor="t") == 4  # fay, ana, bia, eva: frozen now
    with pytest.raises(GroupError, match="not a draft"):
        store.groups.start(draft, actor="t")

    api = CampaignRequest(
        account="avisos",
        subject="s",
        html="h",
        recipients=[{"email": "Gil@X.com", "nome": "Gil", "curso": "A"}],
        groups=["g2"],
        origin="api:polo",
    )
    first, made = create(store, config, api, KINDS, actor="api", client="polo", idempotency_key="k")
    again, made_again = create(
        store, config, api, KINDS, actor="api", client="polo", idempotency_key="k"
    )
    assert made and not made_again and first == again
    assert [r.address for r in store.results.page(first, limit=10)] == ["Gil@x.com", "fay@x.com"]
