"""docs/API.md cannot rot: every ```python block of the guide runs, in order, in one namespace."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "API.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def guide_blocks() -> list[tuple[int, str]]:
    """The ```python blocks of the guide with the line each starts on."""
    text = GUIDE.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _BLOCK.finditer(text)]


def test_the_guide_has_examples_for_every_user() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert len(guide_blocks()) >= 10
    for heading in ("## Dispatcher", "## Planner", "## Analyst", "## Reference"):
        assert heading in text


def test_every_python_block_of_the_guide_runs(data_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # data_dir sets $CRISIS_DISPATCH_DATA, which City.load() reads; the guide's maps go to a
    # tempfile.mkdtemp() folder, kept under tmp_path here.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace: dict[str, object] = {"__name__": "guide"}
    for line, source in guide_blocks():
        code = compile(source, f"{GUIDE}:{line}", "exec")  # a failure points at the guide's line
        exec(code, namespace)  # noqa: S102 - the guide is this repository's own text
    out = namespace["out"]
    assert isinstance(out, Path) and out.parent == tmp_path
    written = sorted(p.name for p in out.iterdir())
    assert written == ["coverage.html", "dispatch.html", "staging.html"]
    from maps.assets import remote_references

    for name in written:  # OFFLINE = True in the guide: pages that load nothing remote
        assert remote_references((out / name).read_text(encoding="utf-8")) == []
