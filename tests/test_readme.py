"""The README's quick tour runs end to end as written."""

import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_quick_tour_runs(capsys):
    text = README.read_text()
    tour = text[text.index("## A quick tour"):text.index("## Examples")]
    (code,) = re.findall(r"```python\n(.*?)```", tour, flags=re.S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the finder's "still falling" note
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if "warmup_steps" in line)
    assert lines[header].split() == ["lr", "warmup_steps", "eval", "loss", "accuracy",
                                     "diverged", "diagnosis"]
    rows = lines[header + 2: header + 2 + 16]  # 8 LRs x 2 warmups, 2 seeds each
    assert all(re.search(r" [012]/2 ", row) for row in rows)
    assert lines[header + 18].startswith("recommended: lr=")
    assert len([row for row in rows if row.startswith("*")]) == 1
