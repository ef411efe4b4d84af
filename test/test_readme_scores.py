"""README's scores block shows the bench scores record (benchmarks/results/scores.md): its two tables, row for row."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK_START = "<!-- scores: from benchmarks/results/scores.md -->"
BLOCK_END = "<!-- scores: end -->"


def tables(text: str) -> list[list[str]]:
    """The markdown tables of text, in order: each a list of its '|' lines (header, separator and rows)."""
    found, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            found.append(rows)
            rows = []
    return found


def test_readme_scores_block_holds_the_first_two_tables_of_the_scores_record():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(BLOCK_START) == 1 and readme.count(BLOCK_END) == 1
    block = readme.split(BLOCK_START)[1].split(BLOCK_END)[0]
    record = tables((ROOT / "benchmarks/results/scores.md").read_text())
    assert len(record) >= 2
    assert tables(block) == record[:2], "README's scores block is stale: copy scores.md's first two tables into it"
