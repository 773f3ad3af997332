"""The project's imports keep its layering: the import-linter contracts of pyproject.toml ([tool.importlinter]).

common/ imports nothing of the project outside it, sinks/ only common/, producers/ no worker or API module, the
API and the workers not each other, and no platform process imports infra/ (the dev stack); no package has an
import cycle between its modules. A failure prints the offending imports with their lines.
Run alone with `lint-imports` (or `pytest tests/unit/test_layers.py`).
"""

from __future__ import annotations

import pytest
from importlinter.application import use_cases
from importlinter.configuration import configure

from common.settings import REPO_ROOT


def test_imports_keep_the_layers_and_have_no_cycles(capsys: pytest.CaptureFixture[str]) -> None:
    # Not importlinter.cli.lint_imports: it reconfigures logging (disabling the loggers of this process) and
    # sys.path. No cache: the graph is built from the files as they are, and no cache directory is left behind.
    configure()
    kept = use_cases.lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert kept, capsys.readouterr().out
