"""5-point similarity alignment onto SFace's 112x112 template (as FaceRecognizerSF.alignCrop)."""

from __future__ import annotations

import numpy as np

#: SFace / ArcFace 112x112 template: right eye, left eye, nose, right mouth, left mouth.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
SIZE = 112


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, translation) mapping src to dst."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (sc**2).sum() / n
    scale = float((s * d).sum() / var_s) if var_s > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_matrix(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 transform taking frame landmarks onto the 112x112 template."""
    return umeyama(np.asarray(landmarks, np.float64).reshape(5, 2), TEMPLATE_112)


def align(frame_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 BGR aligned face crop (bilinear, zero border)."""
    import cv2

    m = align_matrix(landmarks)
    return cv2.warpAffine(frame_bgr, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
