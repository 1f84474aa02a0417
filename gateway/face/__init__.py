"""On-device face pipeline: detection (YuNet), alignment, embedding (SFace), quality, liveness."""
