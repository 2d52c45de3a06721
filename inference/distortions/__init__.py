"""Real-world distortions of frames (compression, blur, noise, ...) and their application to the frames
a video is read with: what robustness evaluations perturb."""
