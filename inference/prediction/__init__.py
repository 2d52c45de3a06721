"""predict over a folder of videos: its options and run (predict_folder), what a resumed or distributed
run keeps (progress) and the submission and details it writes (submission)."""
