"""How the U-Net runs at inference: precision, memory format, torch.compile, or an ONNX Runtime session."""
