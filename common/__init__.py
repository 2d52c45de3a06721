"""Project-wide helpers that preprocess, training and inference all use: the command-line runner and
its errors (cli), atomic writes (io_utils), media records, video reading and writing, media limits,
safe YAML and bounded numbers. Imports none of preprocess, training or inference."""
