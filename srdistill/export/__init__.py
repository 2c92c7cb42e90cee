"""Export of exits as standalone lightweight models (pth, safetensors, ONNX, TorchScript)."""
