"""``moscale eval physics``: the shipped model's motions through the retargeter and the simulated G1;
the JSON carries one row per command with the table's figures, and every run's own report."""

from __future__ import annotations

import json

import pytest

from moscale_common.errors import ConfigError
from moscale_common.paths import resource
from moscale_ros.cli import main
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT
from moscale_ros.sim.evaluate import PhysicsEvalConfig, ScheduledClock, evaluate, format_table


@pytest.mark.skipif(not resource(DEFAULT_CHECKPOINT).is_file(), reason="shipped model absent")
def test_eval_physics_json_has_the_table_figures(capsys) -> None:
    # "throw a punch" is a weak skill (one clip): the node refuses it by default, the protocol measures
    # it (unknown_command: warn in config/eval/physics.yaml) instead of ending there
    argv = ["eval", "physics", "--commands", "throw a punch", "walk forward", "--seeds", "1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {row["command"]: row for row in result["rows"]}
    assert set(rows) == {"throw a punch", "walk forward"}
    for text, row in rows.items():
        assert row["runs"] == 1 and 0.0 <= row["stay_up_fraction"] <= 1.0
        assert row["median_tracking_rms_deg"] > 0 and row["median_peak_effort_fraction"] > 0
        assert row["self_collisions"] >= 0 and row["rejected_by_default_rules"] in (0, 1)
        (run,) = result["runs"][text]
        assert run["executed"] and run["seed"] == 0
        assert (run["fell_at_s"] is None) == run["stayed_up"] == (row["stay_up_fraction"] == 1.0)
    table = format_table(result["rows"])
    assert table.splitlines()[0].startswith("| command | runs | up |") and "| walk forward | 1 |" in table


def test_scheduled_clock_replays_the_ready_times() -> None:
    clock = ScheduledClock([0.08, 0.2, 0.3, 0.5], num_scales=4)
    clock.new_command()
    start = clock()
    for k, expected in [(1, 0.08), (2, 0.2), (3, 0.3), (4, 0.5)]:
        clock.scale_ready(k)
        assert clock() - start == pytest.approx(expected)
    clock.new_command()
    assert clock() == pytest.approx(start + ScheduledClock.GAP_S)
    short = ScheduledClock([0.1, 0.4], num_scales=4)  # the final scale takes the last entry
    short.new_command()
    short.scale_ready(2)
    short.scale_ready(3)
    assert short() - short.start == pytest.approx(0.4)
    short.scale_ready(4)
    assert short() - short.start == pytest.approx(0.4)
    with pytest.raises(ConfigError, match="plan_ready_s"):
        PhysicsEvalConfig(commands=["bow"], plan_ready_s=[0.5, 0.2])


@pytest.mark.skipif(not resource(DEFAULT_CHECKPOINT).is_file(), reason="shipped model absent")
def test_the_robot_gets_every_plan_on_the_schedule_and_the_result_repeats() -> None:
    """Every scale goes to the controller (controller_plans: every_scale) at its scheduled ready time;
    the figures do not depend on the machine's speed, so a second evaluation gives the same ones."""
    config = PhysicsEvalConfig(commands=["raise the right hand"], duration=2.0, seeds=[0], settle=0.2)
    first, second = (evaluate(config, log=lambda _line: None) for _ in range(2))
    (run,) = first["runs"]["raise the right hand"]
    assert run["plans_received"] == 4 and run["accepted_messages"] == 4 and not run["rejected_by_default_rules"]
    (again,) = second["runs"]["raise the right hand"]
    for key in (
        "stayed_up",
        "fell_at_s",
        "tracking_rms_rad",
        "peak_effort_fraction",
        "self_collisions",
        "trajectory_s",
    ):
        assert again[key] == run[key], key
    final_only = PhysicsEvalConfig(
        commands=["raise the right hand"], duration=2.0, seeds=[0], settle=0.2,
        pipeline={"controller_plans": "final_only"},
    )  # fmt: skip
    (alone,) = evaluate(final_only, log=lambda _line: None)["runs"]["raise the right hand"]
    assert alone["plans_received"] == 1
    with pytest.raises(ConfigError, match="pipeline"):
        evaluate(PhysicsEvalConfig(commands=["bow"], pipeline={"no_such_setting": 1}), log=lambda _line: None)
