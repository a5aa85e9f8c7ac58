"""``moscale eval physics``: the shipped model's motions through the retargeter and the simulated G1;
the JSON carries one row per command with the table's figures, and every run's own report."""

from __future__ import annotations

import json

import pytest

from moscale_common.paths import resource
from moscale_ros.cli import main
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT
from moscale_ros.sim.evaluate import format_table


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
