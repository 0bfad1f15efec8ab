"""Build-time tooling (conversion, quantization). Never imported by a running function."""
