"""The simulated site: its scripted solar overhead consumers, and the option to leave them out."""

from __future__ import annotations

from conftest import eventually, run

from sim.site import SimSite, SiteOptions

R = "es-ESS/SolarOverheadDistributor/Requests"


def test_the_site_runs_an_ev_charger_and_a_pool_heater_as_scripted_consumers() -> None:
    async def scenario() -> None:
        async with SimSite(SiteOptions(speed=60)) as site:
            assert set(site.consumers) == {"EV", "PoolHeater"}
            assert site.broker is not None
            retained = site.broker.retained
            await eventually(lambda: {f"{R}/EV/Request", f"{R}/PoolHeater/Request"}
                             <= set(retained), timeout=5)
            assert retained[f"{R}/EV/Minimum"].payload == b"1380"
            assert retained[f"{R}/PoolHeater/StepSize"].payload == b"1000"
            lines = [line for line in site.describe() if line.startswith("  consumer  ")]
            assert lines == [
                "  consumer  EV, EV charger (scripted, automatic, "
                f"{R}/EV/...): 1380..3680 W in steps of 230 W, priority 35 "
                "(+1 per grant); draws 0 W",
                "  consumer  PoolHeater, Pool heater (scripted, automatic, "
                f"{R}/PoolHeater/...): up to 3000 W in steps of 1000 W, priority 40 "
                "(+5 per grant); draws 0 W"]
            site.broker.publish(f"{R}/EV/Allowance", b"1610", qos=1)
            await eventually(lambda: site.model.snapshot.extra_w.get("EV") == 1610)
            assert site.describe()[-2].endswith("draws 1610 W")
    run(scenario())


def test_scripted_consumers_can_be_left_out() -> None:
    async def scenario() -> None:
        async with SimSite(SiteOptions(scripted_consumers=False)) as site:
            assert site.consumers == {}
            assert "EV" not in site.model.loads
            assert not [line for line in site.describe() if "consumer  " in line]
    run(scenario())
