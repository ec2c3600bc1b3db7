"""Text into vectors: `dense` (the MiniLM model through onnxruntime, lazy and batched; `onnx_model`
prepares and runs it) and `sparse` (BM25 term weights for keyword search, no model)."""
