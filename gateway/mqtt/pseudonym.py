"""Rotating pseudonyms: events name a person only by a per-epoch keyed hash.

``pseudonym = base32(HMAC-SHA256(key, "ag-pseudonym-v1|" + epoch + "|" + person_id)[:16])``
(26 lower-case characters), ``key`` being the site key's ``Purpose.PSEUDONYM`` subkey
(``gateway.keys``). Without it two pseudonyms of the same person in different epochs cannot
be linked; with it the management side can :func:`resolve` a pseudonym against its list of
person ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable

from gateway.errors import PrivacyError

DEFAULT_EPOCH_S = 86_400
PSEUDONYM_BYTES = 16
PSEUDONYM_PATTERN = r"^[a-z2-7]{26}$"
_DOMAIN = b"ag-pseudonym-v1|"
MIN_KEY_BYTES = 16


def epoch_of(ts: float, epoch_s: int = DEFAULT_EPOCH_S) -> int:
    """Index of the epoch that contains unix time ``ts``."""
    if epoch_s <= 0:
        raise PrivacyError(f"pseudonym epoch must be positive, got {epoch_s}")
    return int(ts // epoch_s)


def pseudonym(person_id: str, key: bytes, epoch: int) -> str:
    """The pseudonym of ``person_id`` in epoch index ``epoch`` under the site key."""
    if len(key) < MIN_KEY_BYTES:
        raise PrivacyError(f"pseudonym site key must be at least {MIN_KEY_BYTES} bytes")
    msg = _DOMAIN + str(int(epoch)).encode() + b"|" + person_id.encode("utf-8")
    digest = hmac.new(key, msg, hashlib.sha256).digest()[:PSEUDONYM_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def resolve(pseudonym_: str, candidate_ids: Iterable[str], key: bytes, epoch: int) -> str | None:
    """Return the candidate whose pseudonym in ``epoch`` is ``pseudonym_`` (management side)."""
    for pid in candidate_ids:
        if hmac.compare_digest(pseudonym(pid, key, epoch), pseudonym_):
            return pid
    return None


class Pseudonymizer:
    """Pseudonyms for the current epoch (clock injected)."""

    def __init__(
        self,
        key: bytes,
        epoch_s: int = DEFAULT_EPOCH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise PrivacyError(f"pseudonym site key must be at least {MIN_KEY_BYTES} bytes")
        if epoch_s <= 0:
            raise PrivacyError(f"pseudonym epoch must be positive, got {epoch_s}")
        self._key = key
        self._epoch_s = epoch_s
        self._clock = clock

    def __call__(self, person_id: str | None) -> str | None:
        """The pseudonym of ``person_id`` now (None stays None)."""
        if person_id is None:
            return None
        return pseudonym(person_id, self._key, epoch_of(self._clock(), self._epoch_s))

    def __repr__(self) -> str:
        return f"Pseudonymizer(epoch_s={self._epoch_s})"
