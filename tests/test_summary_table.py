"""studies/summary_table.py: the study's headline table keeps the leaderboard's rank order and shows the rank."""

import importlib.util
from pathlib import Path

from sslbench import leaderboard, leaderboard_render
from sslbench.layout import RunLayout

ROOT = Path(__file__).resolve().parents[1]


def _summary_table():
    spec = importlib.util.spec_from_file_location("summary_table", ROOT / "studies" / "summary_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_in_rank_order_with_their_rank_and_floors_marked(tmp_path, records):
    leaderboard_render.write(leaderboard.build(records.sweep(records.base_scores)), RunLayout(tmp_path))
    lines = _summary_table().render(tmp_path).splitlines()
    assert lines[0].startswith("| method | rank | seeds | kNN k=20 |")
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [c[:3] for c in cells] == [["vicreg", "2", "2"], ["simsiam", "3", "2"], ["raw_pixels (floor)", "1", "1"],
                                      ["random_init (floor)", "4", "1"]]
    assert cells[0][3] == "81.00 ± 12.71"  # mean 0.81 and t(0.975, 1) * sd / sqrt(2) of (0.80, 0.82), in %
    assert cells[2][-1] == "-" and cells[0][-1] == "finished"  # floors are not trained
