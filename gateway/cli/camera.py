"""CLI: ``gateway camera calibrate`` (a camera pair, ChArUco board) and ``camera board``."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError


def _squares(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not COLSxROWS (e.g. 7x5)") from None
    if not (3 <= cols <= 30 and 3 <= rows <= 30):
        raise argparse.ArgumentTypeError("a board has 3..30 squares each way")
    return cols, rows


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``camera calibrate`` and ``camera board``."""
    p = subparsers.add_parser("camera", help="calibrate a door's camera pair")
    sub = p.add_subparsers(dest="camera_command", required=True)
    board = argparse.ArgumentParser(add_help=False)
    board.add_argument("--squares", type=_squares, default=(7, 5), help="COLSxROWS (7x5)")
    board.add_argument("--square-mm", type=float, default=40.0, help="printed square side")
    board.add_argument("--marker-mm", type=float, default=30.0, help="printed marker side")
    cal = sub.add_parser(
        "calibrate",
        parents=[board],
        help="stereo calibration from views of a ChArUco board seen by both cameras",
        description="Finds the board in 10-20 view pairs (different places and tilts), "
        "captured from a door's configured camera pair (--door) or read from image files "
        "(--images), calibrates each camera and the pair (OpenCV), and writes the JSON file "
        "a door's pair.calibration names. Measure the printed square: its size sets the scale.",
    )
    src = cal.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of image pairs")
    src.add_argument(
        "--door", help="capture the views from this door's camera pair (as the daemon reads it)"
    )
    cal.add_argument("--views", type=int, default=15, help="view pairs to capture (--door)")
    cal.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between captured views, to move the board (--door)",
    )
    cal.add_argument(
        "--layout",
        choices=["side_by_side", "two_streams"],
        default="side_by_side",
        help="side-by-side frames, or first/ and second/ sub-folders with the same names",
    )
    cal.add_argument(
        "--out",
        type=Path,
        help="calibration file to write (with --door: default the pair's calibration path)",
    )
    cal.set_defaults(func=run_calibrate)
    img = sub.add_parser("board", parents=[board], help="write the board as a PNG to print")
    img.add_argument("--out", type=Path, required=True, help="PNG file")
    img.add_argument("--px-per-mm", type=float, default=10.0, help="resolution (10 = 254 dpi)")
    img.set_defaults(func=run_board)


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate and write the file; exit 1 with the reason on failure."""
    from gateway.face.stereo_calibrate import BoardSpec, calibrate_pair, load_pairs

    try:
        spec = BoardSpec(tuple(args.squares), args.square_mm, args.marker_mm)
        if args.door is not None:
            pairs, out = _captured(args, spec)
        elif args.out is None:
            print("error: --out is required with --images")
            return 1
        else:
            pairs, out = load_pairs(args.images, args.layout), args.out
        result = calibrate_pair(pairs, spec)
    except GatewayError as exc:
        print(f"error: {exc}")
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(result.calibration.to_json() + "\n")
    Path(tmp).replace(out)
    cal = result.calibration
    print(
        f"calibrated from {result.pairs_used} of {result.pairs_given} image pairs: "
        f"reprojection error {result.rms_px:.2f} px, baseline {cal.baseline_mm:.1f} mm, "
        f"image {cal.image_size[0]}x{cal.image_size[1]}; wrote {out}"
    )
    if result.rms_px > 1.0:
        print("warning: reprojection error above 1 px: retake the images (sharp, still board)")
    return 0


def _captured(args: argparse.Namespace, spec: Any) -> tuple[list[Any], Path]:
    """Views captured from the door's pair with per-view feedback, and the file to write."""
    from gateway.config.root import load_config
    from gateway.face.stereo_calibrate import BoardFinder, CalibrationError
    from gateway.gate.calibration_capture import capture_views, describe, open_pair

    if args.views < 3:
        raise CalibrationError("--views must be at least 3 (10-20 recommended)")
    cfg = load_config(args.config)
    reader = open_pair(cfg, args.door)
    pair = cfg.doors[args.door].pair
    out = args.out or (pair.calibration if pair is not None else None)
    if out is None:
        raise CalibrationError("no --out and the door's pair names no calibration file")
    print(f"capturing {args.views} views of the board from {reader.label}", flush=True)
    try:
        views = capture_views(
            reader,
            BoardFinder(spec),
            args.views,
            interval_s=args.interval,
            on_view=lambda r: print(describe(r, args.views), flush=True),
        )
    finally:
        reader.close()
    return views, Path(out)


def run_board(args: argparse.Namespace) -> int:
    """Write the board image."""
    import cv2

    from gateway.face.stereo_calibrate import BoardSpec

    spec = BoardSpec(tuple(args.squares), args.square_mm, args.marker_mm)
    try:
        board = spec.board()
    except GatewayError as exc:
        print(f"error: {exc}")
        return 1
    w = round(spec.squares[0] * spec.square_mm * args.px_per_mm)
    h = round(spec.squares[1] * spec.square_mm * args.px_per_mm)
    image = board.generateImage((w, h))  # a ChArUco board to print, generated here
    if not cv2.imwrite(str(args.out), image):  # privacy-ok: a generated board, no camera frame
        print(f"error: cannot write {args.out}")
        return 1
    print(f"wrote {args.out} ({w}x{h} px): print it at {args.px_per_mm * 25.4:.0f} dpi")
    return 0
