"""What leaves a finished run: predictions on new text, GLUE submissions, exported folders.

`predict` holds `Predictor` (`bamkd predict`), `submission` the GLUE test-set files (`bamkd
submit`), `export` the multi-task and per-task Hugging Face folders (`bamkd export`).
"""
