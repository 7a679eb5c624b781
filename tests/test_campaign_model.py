"""One schedule (D5–D9): `disparo plan --json`, `disparo campaign show --json` and the TUI's
view model agree on random campaigns, with pauses and deadlines."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.campaign import Campaign, Content
from engine.cli.campaigns import campaign as campaign_group
from engine.cli.context import AppContext
from engine.cli.names import plan_command
from engine.clock import TestClock
from engine.mailing_names import MailingName, render_name
from engine.schedule import Pacing, batch_of, batch_sizes
from engine.store import Store
from engine.store import schema as t
from engine.store.campaigns import campaign_columns
from tui.backend import Backend
from tui.screens.campaign import DetailCache, campaign_detail

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 09:00 in São Paulo
TZ = "America/Sao_Paulo"

PACINGS = st.one_of(
    st.none(),
    st.builds(
        Pacing.percent,
        st.integers(1, 99),
        st.integers(1, 240).map(lambda m: timedelta(minutes=m)),
    ),
    st.builds(
        Pacing.size,
        st.integers(1, 500),
        st.integers(1, 6).map(lambda h: timedelta(hours=h)),
    ),
)


def make_store(folder: Path, rate: float) -> tuple[Path, Store, TestClock]:
    clock = TestClock(START)
    config = folder / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"time_zone": TZ, "database_url": "sqlite:///disparo.db"},
                "accounts": {"sms": {"channel": "sms-long", "sandbox": True, "rate": rate}},
                "wallets": {"BRAD": {"default_sender": "sms"}},
            }
        )
    )
    return config, Store.open(f"sqlite:///{folder / 'disparo.db'}", clock=clock), clock


def insert(store: Store, c: Campaign) -> int:
    """A campaign row and its deliveries, cut into batches as the importer cuts them."""
    with store.write() as conn:
        cid = conn.execute(
            sa.insert(t.campaigns).values(
                {
                    **campaign_columns(c),
                    "recipients": c.recipients,
                    "audience": c.audience,
                    "batches": c.batches,
                    "released_batches": 0,
                    "started_at": c.started_at,
                    "paused_seconds": c.paused_seconds,
                    "paused_since": c.paused_since,
                    "created_at": START,
                    "updated_at": START,
                }
            )
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(t.deliveries),
            [
                {
                    "campaign_id": cid,
                    "position": i,
                    "batch": batch_of(i, c.recipients, c.pacing),
                    "address": f"+55119{i:08d}",
                    "status": "pending",
                    "attempts": 0,
                }
                for i in range(c.recipients)
            ],
        )
    return int(cid)


def show_json(config: Path, clock: TestClock, cid: int) -> dict[str, Any]:
    result = CliRunner().invoke(
        campaign_group, ["show", str(cid), "--json"], obj=AppContext(config, clock)
    )
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.output)["schedule"]
    return body


def plan_json(
    config: Path,
    clock: TestClock,
    recipients: int,
    pacing: Pacing | None,
    deadline: datetime | None,
    rate: float,
) -> dict[str, Any]:
    """`disparo plan NAME --contacts N --now START --rate R --json` for a name saying the
    same (the grammar's `_q` is percent pacing only; size pacing comes from a source, T7)."""
    name = render_name(
        MailingName(
            date=date(2026, 11, 23),
            sequence=1,
            wallet="BRAD",
            channel="sms-long",
            pacing=pacing,
            deadline=deadline.astimezone(_zone()).replace(tzinfo=None) if deadline else None,
        )
    )
    now = START.astimezone(_zone()).strftime("%Y-%m-%dT%H:%M")
    args = [name, "--contacts", str(recipients), "--now", now, "--rate", str(rate), "--json"]
    result = CliRunner().invoke(plan_command, args, obj=AppContext(config, clock))
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.output)
    return body


def _zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(TZ)


def comparable(schedule: dict[str, Any]) -> dict[str, Any]:
    """What every view must agree on: the batches (sizes, releases, projected ends,
    expiries), the finish and what expires."""
    return {
        "batches": [
            {k: b[k] for k in ("index", "size", "release_at", "done_at", "expired")}
            for b in schedule["batches"]
        ],
        "finish_at": schedule["finish_at"],
        "expired": schedule["expired"],
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    recipients=st.integers(1, 400),
    pacing=PACINGS,
    rate=st.sampled_from([0.5, 1.0, 2.0, 10.0, 25.0]),
    deadline_minutes=st.none() | st.integers(1, 60 * 30),
    paused_minutes=st.integers(0, 300),
    pause_running=st.booleans(),
    later_minutes=st.integers(0, 600),
)
def test_plan_show_and_the_tui_agree(
    tmp_path_factory: Any,
    recipients: int,
    pacing: Pacing | None,
    rate: float,
    deadline_minutes: int | None,
    paused_minutes: int,
    pause_running: bool,
    later_minutes: int,
) -> None:
    folder = tmp_path_factory.mktemp("agree")
    config, store, clock = make_store(folder, rate)
    deadline = START + timedelta(minutes=deadline_minutes) if deadline_minutes else None
    if deadline is not None:
        deadline = deadline.replace(second=0)
    sizes = batch_sizes(recipients, pacing)
    fresh = Campaign(
        name="agree",
        channel="sms-long",
        account="sms",
        address_kind="phone",
        status="scheduled",
        start_at=START,
        deadline=deadline,
        pacing=pacing,
        recipients=recipients,
        audience=recipients,
        batches=len(sizes),
        content=Content(body="Oi"),
    )
    try:
        backend = Backend(store, _config(config), clock, role="viewer", actor="t")
        # 1. a campaign about to start, never paused: the plan, as `plan` prints it
        cid = insert(store, fresh)
        shown = show_json(config, clock, cid)
        detail = campaign_detail(backend, cid, DetailCache())
        assert detail is not None
        ui = detail.schedule.as_json(_zone())
        assert comparable(shown) == comparable(ui)
        if pacing is None or pacing.kind == "percent":
            planned = plan_json(config, clock, recipients, pacing, deadline, rate)
            assert comparable(shown) == comparable(planned)
        # 2. started, paused for a while (still paused, or resumed), seen later
        paused = timedelta(minutes=paused_minutes)
        later = START + paused + timedelta(minutes=later_minutes)
        clock = TestClock(later)
        backend = Backend(store, backend.config, clock, role="viewer", actor="t")
        resumed = Campaign(
            **{
                **fresh.__dict__,
                "status": "paused" if pause_running else "sending",
                "started_at": START,
                "paused_seconds": 0 if pause_running else int(paused.total_seconds()),
                "paused_since": later - paused if pause_running else None,
            }
        )
        cid = insert(store, resumed)
        shown = show_json(config, clock, cid)
        detail = campaign_detail(backend, cid, DetailCache())
        assert detail is not None
        assert comparable(shown) == comparable(detail.schedule.as_json(_zone()))
        assert shown["released"] == detail.schedule.released
        # every release shifted by the time spent paused (D7)
        shift = paused if not pause_running else later - (later - paused)
        for b, size in zip(shown["batches"], sizes, strict=True):
            release = datetime.fromisoformat(b["release_at"])
            expected = (
                START + shift + (b["index"] - 1) * (pacing.interval if pacing else timedelta(0))
            )
            assert release == expected and b["size"] == size
    finally:
        store.close()


def _config(path: Path) -> Any:
    from engine.config import load_config

    return load_config(path)
