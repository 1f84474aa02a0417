"""In-memory template gallery: 1:N top-k cosine search and 1:1 verification, thread-safe."""

from __future__ import annotations

import threading

import numpy as np

from gateway.face.embedder import DIM, l2_normalise


class Gallery:
    """L2-normalised float32 templates, several per person, searched with one matmul.

    Rows live in a growing buffer; removing a person moves the last rows into the holes.
    Every method takes the lock, so an enrol/withdraw is visible to the next search.
    """

    def __init__(self, dim: int = DIM, capacity: int = 1024) -> None:
        """An empty gallery of ``dim``-d templates."""
        self.dim = dim
        self._lock = threading.RLock()
        self._mat = np.zeros((capacity, dim), np.float32)
        self._owner = np.zeros(capacity, np.int64)
        self._n = 0
        self._ids: list[str] = []  # owner index -> person id
        self._index: dict[str, int] = {}  # person id -> owner index
        self._rows: dict[int, list[int]] = {}  # owner index -> rows
        self._free: list[int] = []

    def __len__(self) -> int:
        """Number of templates."""
        return self._n

    def people(self) -> set[str]:
        """Enrolled person ids."""
        with self._lock:
            return set(self._index)

    def _check(self, templates: np.ndarray) -> np.ndarray:
        t = np.asarray(templates, np.float32)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2 or t.shape[1] != self.dim or not np.isfinite(t).all():
            raise ValueError(f"templates must be finite Nx{self.dim}, got shape {t.shape}")
        return l2_normalise(t)

    def _remove_rows(self, owner: int) -> int:
        rows = sorted(self._rows.pop(owner, []), reverse=True)
        for r in rows:
            last = self._n - 1
            if r != last:
                self._mat[r] = self._mat[last]
                moved = int(self._owner[last])
                self._owner[r] = moved
                lst = self._rows[moved]
                lst[lst.index(last)] = r
            self._n -= 1
        return len(rows)

    def replace_person(self, person_id: str, templates: np.ndarray) -> None:
        """Set a person's templates (replacing any previous ones); empty removes the person."""
        t = self._check(templates) if len(templates) else np.zeros((0, self.dim), np.float32)
        with self._lock:
            if len(t) == 0:
                self.remove_person(person_id)
                return
            owner = self._index.get(person_id)
            if owner is None:
                if self._free:
                    owner = self._free.pop()
                    self._ids[owner] = person_id
                else:
                    owner = len(self._ids)
                    self._ids.append(person_id)
                self._index[person_id] = owner
            else:
                self._remove_rows(owner)
            need = self._n + len(t)
            if need > len(self._mat):
                cap = max(need, 2 * len(self._mat))
                mat = np.zeros((cap, self.dim), np.float32)
                mat[: self._n] = self._mat[: self._n]
                own = np.zeros(cap, np.int64)
                own[: self._n] = self._owner[: self._n]
                self._mat, self._owner = mat, own
            start = self._n
            self._mat[start:need] = t
            self._owner[start:need] = owner
            self._rows[owner] = list(range(start, need))
            self._n = need

    def remove_person(self, person_id: str) -> int:
        """Drop a person's templates at once; returns how many were removed."""
        with self._lock:
            owner = self._index.pop(person_id, None)
            if owner is None:
                return 0
            removed = self._remove_rows(owner)
            self._ids[owner] = ""
            self._free.append(owner)
            return removed

    def clear(self) -> None:
        """Remove everyone."""
        with self._lock:
            self._n = 0
            self._ids, self._index, self._rows, self._free = [], {}, {}, []

    def search(self, probe: np.ndarray, k: int = 2) -> list[tuple[str, float]]:
        """Top-``k`` distinct people by best cosine similarity to ``probe``, best first."""
        p = self._check(probe)[0]
        with self._lock:
            n = self._n
            if n == 0 or k <= 0:
                return []
            scores = self._mat[:n] @ p
            owners = self._owner[:n]
            m = min(n, max(4 * k, 16))
            while True:
                top = np.argpartition(-scores, m - 1)[:m] if m < n else np.arange(n)
                top = top[np.argsort(-scores[top], kind="stable")]
                best: dict[int, float] = {}
                for r in top:
                    o = int(owners[r])
                    if o not in best:
                        best[o] = float(scores[r])
                        if len(best) == k:
                            break
                if len(best) >= k or m >= n:
                    break
                m = min(n, m * 4)
            return [(self._ids[o], s) for o, s in best.items()]

    def identify(self, probe: np.ndarray, threshold: float, margin: float) -> str | None:
        """The person whose best score >= threshold and leads the best other person by margin."""
        return self.identify_scored(probe, threshold, margin)[0]

    def identify_scored(
        self, probe: np.ndarray, threshold: float, margin: float
    ) -> tuple[str | None, float | None, float | None]:
        """:meth:`identify` with the evidence: (person or None, top score, lead over the
        runner-up). With nobody else enrolled the lead is the top score itself (as if the
        runner-up scored 0, an unrelated face's expected similarity)."""
        person, score, lead, _ = self.identify_ranked(probe, threshold, margin)
        return person, score, lead

    def identify_ranked(
        self, probe: np.ndarray, threshold: float, margin: float
    ) -> tuple[str | None, float | None, float | None, str | None]:
        """:meth:`identify_scored` and the best-ranked person, also when the score or lead
        fell short (for the two-frame rule); None only with nobody enrolled."""
        top = self.search(probe, 2)
        if not top:
            return None, None, None, None
        score = top[0][1]
        lead = score - top[1][1] if len(top) > 1 else score
        if score < threshold or lead < margin:
            return None, score, lead, top[0][0]
        return top[0][0], score, lead, top[0][0]

    def score(self, probe: np.ndarray, person_id: str) -> float | None:
        """Best cosine similarity of ``probe`` to one person's templates (None if unknown)."""
        p = self._check(probe)[0]
        with self._lock:
            owner = self._index.get(person_id)
            if owner is None:
                return None
            rows = self._rows[owner]
            return float((self._mat[rows] @ p).max())

    def verify(self, probe: np.ndarray, person_id: str, threshold: float) -> bool:
        """1:1: True when ``probe`` matches ``person_id`` at ``threshold``."""
        s = self.score(probe, person_id)
        return s is not None and s >= threshold
