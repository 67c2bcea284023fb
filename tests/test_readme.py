"""The README's Quick start runs what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_test_command_of_the_quick_start():
    test_cmd = _quick_start_commands()[-1]
    ci = (ROOT / ".ci" / "run").read_text()
    install, _, run = test_cmd.partition(" && ")
    assert install.replace("pip install", "python -m pip install --quiet") in ci
    assert run in ci.splitlines()
