"""Gallery: top-k per person, threshold + margin against the best other person, thread-safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gateway.face.embedder import l2_normalise
from gateway.face.gallery import Gallery


def rand(n: int, seed: int) -> np.ndarray:
    return l2_normalise(np.random.default_rng(seed).standard_normal((n, 128)))


def brute_force(g: dict[str, np.ndarray], probe: np.ndarray, k: int) -> list[tuple[str, float]]:
    best = {p: float((t @ probe).max()) for p, t in g.items()}
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


def test_search_matches_brute_force_with_several_templates_per_person() -> None:
    rng = np.random.default_rng(1)
    g, ref = Gallery(capacity=4), {}
    for i in range(300):
        t = rand(int(rng.integers(1, 6)), i)
        g.replace_person(f"p{i}", t)
        ref[f"p{i}"] = t
    for i in range(0, 300, 7):  # withdraw some, re-enrol some
        assert g.remove_person(f"p{i}") == len(ref.pop(f"p{i}"))
    for i in range(1, 300, 11):
        ref[f"p{i}"] = rand(3, 1000 + i)
        g.replace_person(f"p{i}", ref[f"p{i}"])
    assert len(g) == sum(len(t) for t in ref.values())
    assert g.people() == set(ref)
    for s in range(20):
        probe = rand(1, 5000 + s)[0]
        if s % 2:  # a probe close to someone's template
            probe = l2_normalise((ref["p5"][0] + 0.3 * probe)[None])[0]
        got = g.search(probe, k=5)
        want = brute_force(ref, probe, 5)
        assert [p for p, _ in got] == [p for p, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], atol=1e-5)


def test_search_finds_k_people_when_one_person_has_many_close_templates() -> None:
    g = Gallery()
    base = rand(1, 0)[0]
    many = l2_normalise(base + 0.01 * np.random.default_rng(3).standard_normal((200, 128)))
    g.replace_person("crowd", many)
    g.replace_person("other", l2_normalise((base + 0.5 * rand(1, 9)[0])[None]))
    top = g.search(base, k=2)
    assert [p for p, _ in top] == ["crowd", "other"]


def test_identify_threshold_and_margin_against_best_other_person() -> None:
    g = Gallery()
    a = rand(1, 1)[0]
    b = l2_normalise((a + 0.05 * rand(1, 2)[0])[None])[0]  # a look-alike of a
    g.replace_person("alice", np.stack([a, rand(1, 3)[0]]))  # two templates for alice
    g.replace_person("bob", b[None])
    assert g.identify(a, threshold=0.5, margin=0.0) == "alice"
    assert g.identify(a, threshold=0.5, margin=0.2) is None  # bob too close
    g.remove_person("bob")
    assert g.identify(a, threshold=0.5, margin=0.2) == "alice"
    assert g.identify(rand(1, 50)[0], threshold=0.5, margin=0.0) is None
    assert g.verify(a, "alice", 0.9)
    assert not g.verify(a, "bob", 0.1)
    assert g.score(a, "nobody") is None
    assert g.search(a, k=0) == []
    assert Gallery().search(a) == []


def test_replace_removes_old_templates_and_empty_replace_withdraws() -> None:
    g = Gallery()
    g.replace_person("x", rand(3, 1))
    g.replace_person("x", rand(2, 2))
    assert len(g) == 2
    g.replace_person("x", np.zeros((0, 128), np.float32))
    assert len(g) == 0
    assert g.people() == set()
    assert g.remove_person("x") == 0
    with pytest.raises(ValueError, match="Nx128"):
        g.replace_person("y", np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match="finite"):
        g.replace_person("y", np.full((1, 128), np.nan, np.float32))
    g.replace_person("y", 5 * rand(1, 4))  # stored normalised
    assert g.search(rand(1, 4)[0], 1)[0][1] == pytest.approx(1.0, abs=1e-5)
    g.clear()
    assert len(g) == 0


def test_concurrent_enrol_withdraw_and_search() -> None:
    g = Gallery(capacity=8)
    g.replace_person("stable", rand(1, 42))
    probe = rand(1, 42)[0]
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(200):
                g.replace_person(f"w{w}-{i % 10}", rand(2, w * 1000 + i))
                if i % 3 == 0:
                    g.remove_person(f"w{w}-{(i + 5) % 10}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                top = g.search(probe, 1)
                assert top[0][0] == "stable"
                assert top[0][1] == pytest.approx(1.0, abs=1e-5)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    people = g.people()
    assert len(g) == 2 * (len(people) - 1) + 1


def test_identify_scored_gives_the_evidence_behind_the_answer() -> None:
    g = Gallery(dim=4)
    assert g.identify_scored(np.array([1.0, 0, 0, 0], np.float32), 0.5, 0.1) == (None, None, None)
    g.replace_person("a", np.array([[1.0, 0, 0, 0]], np.float32))
    probe = np.array([0.8, 0.6, 0, 0], np.float32)
    # one person enrolled: the lead is the score itself (a runner-up at 0)
    assert g.identify_scored(probe, 0.5, 0.1) == ("a", pytest.approx(0.8), pytest.approx(0.8))
    g.replace_person("b", np.array([[0.0, 1.0, 0, 0]], np.float32))
    who, score, lead = g.identify_scored(probe, 0.5, 0.1)
    assert (who, score, lead) == ("a", pytest.approx(0.8), pytest.approx(0.2))
    # refused for a small lead, the evidence still reported; identify agrees
    assert g.identify_scored(probe, 0.5, 0.25) == (None, pytest.approx(0.8), pytest.approx(0.2))
    assert g.identify(probe, 0.5, 0.25) is None
    assert g.identify(probe, 0.85, 0.1) is None
