"""What engines and scorers run on: the model cache, the Loadable contract, device and dtype choice, Hub
access, torch/ONNX helpers, CUDA graphs, the shared speaker-embedding model and the entry-point plugin
registry both registries are built on.

`runtime` sits below `engines` and `scoring` and imports neither (tests/unit/runtime/test_layers.py checks
it). Importing it is cheap: torch, onnxruntime and transformers load only inside the functions that need them.
"""
