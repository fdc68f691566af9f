"""Every case of the bad-input catalogue gets the outcome it should, and loses nothing on disk.

The catalogue and its categories: :mod:`tests.reliability.catalogue`; the cases:
:mod:`tests.reliability.cases`; the published table: ``docs/reliability.md``
(``python -m tests.reliability.catalogue``).
"""

from __future__ import annotations

import pytest

pytest.importorskip("tblite.ase", reason="the catalogue's data are GFN2-xTB labels (pip install tblite)")
pytest.importorskip("lightning", reason="the catalogue trains a tiny model (pip install eqt[train])")

from tests.reliability.cases import CASES  # noqa: E402
from tests.reliability.catalogue import build_workspace, run_case  # noqa: E402


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("reliability") / "template")


def test_the_catalogue_is_large_and_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 100
    assert {c.expect for c in CASES} == {"error", "accepted"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, template, tmp_path):
    outcome = run_case(case, template, tmp_path / "ws")
    wanted = "clear error" if case.expect == "error" else "accepted"
    assert outcome.category == wanted, f"{case.what}: {outcome.category}: {outcome.message}"
    assert not outcome.changed, f"{case.what}: changed files already on disk: {outcome.changed}"
