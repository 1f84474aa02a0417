"""LFW pairs files: View 1 ("N") and View 2 ("folds N") headers, and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.eval.pairs import PairsFormatError, parse_pairs
from tests.conftest import SHARED

VIEW1 = """3
Aaron_Peirsol	1	2
Aaron_Peirsol	3	4
Bob	1	3
AJ_Cook	1	Marsha_Thomason	1
Aaron_Sorkin	2	Frank_Solich	5
X	1	Y	2
"""

VIEW2 = """2 2
A	1	2
B	1	2
A	1	C	1
B	2	C	1
D	1	3
E	1	2
D	1	E	1
C	1	A	2
"""


def test_view1_header_n(tmp_path: Path) -> None:
    f = tmp_path / "pairsDevTrain.txt"
    f.write_text(VIEW1)
    pf = parse_pairs(f, n_folds=2)
    assert pf.view == 1
    assert pf.n_sets == 1
    assert pf.per_set == 3
    assert [p.same for p in pf.pairs] == [True] * 3 + [False] * 3
    first = pf.pairs[0]
    assert (first.name_a, first.num_a, first.name_b, first.num_b) == (
        "Aaron_Peirsol",
        1,
        "Aaron_Peirsol",
        2,
    )
    diff = pf.pairs[3]
    assert (diff.name_a, diff.num_a, diff.name_b, diff.num_b) == (
        "AJ_Cook",
        1,
        "Marsha_Thomason",
        1,
    )
    # dealt round-robin within same and within different
    assert [p.fold for p in pf.pairs] == [0, 1, 0, 0, 1, 0]
    a, b = first.paths(Path("/imgs"))
    assert a == Path("/imgs/Aaron_Peirsol/Aaron_Peirsol_0001.jpg")
    assert b == Path("/imgs/Aaron_Peirsol/Aaron_Peirsol_0002.jpg")


def test_view2_header_folds_n(tmp_path: Path) -> None:
    f = tmp_path / "pairs.txt"
    f.write_text(VIEW2)
    pf = parse_pairs(f)
    assert pf.view == 2
    assert (pf.n_sets, pf.per_set) == (2, 2)
    assert [p.fold for p in pf.pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.same for p in pf.pairs] == [True, True, False, False] * 2
    assert pf.pairs[7].name_a == "C"
    assert pf.pairs[7].num_b == 2


@pytest.mark.shared
def test_real_devtrain_file() -> None:
    f = SHARED / "faces" / "lfw-dev" / "pairsDevTrain.txt"
    if not f.is_file():
        pytest.skip(f"../shared is absent: {f} (LFW pairsDevTrain.txt) cannot be parsed")
    pf = parse_pairs(f)
    assert len(pf.pairs) == 2200
    assert sum(p.same for p in pf.pairs) == 1100
    assert {p.fold for p in pf.pairs} == set(range(10))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("1 2 3\n", "header"),
        ("2\nA\t1\t2\n", "announces 4 pairs"),
        ("1\nA\t1\nB\t1\tC\t1\n", "3 fields"),
        ("1\nA\t1\t2\nB\t1\tC\n", "4 fields"),
        ("1\nA\tx\t2\nB\t1\tC\t1\n", "'x' is not an integer"),
        ("abc\n", "pair count 'abc'"),
    ],
)
def test_bad_pairs_files(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(PairsFormatError, match=match):
        parse_pairs(f)


def test_missing_pairs_file(tmp_path: Path) -> None:
    with pytest.raises(PairsFormatError, match="cannot read"):
        parse_pairs(tmp_path / "nope.txt")
