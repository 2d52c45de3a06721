"""Faces in frames: MTCNN detection with the recipe's thresholds and scaling (face_detector), fast
mode's seeded detection (mtcnn_seeded) on lazily resized frames (lazy_resize), face geometry from 5
landmarks (face_geometry), the recipe's crop geometry (crops) and face tracks (tracks)."""
