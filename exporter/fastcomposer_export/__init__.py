"""FastComposer -> TorchScript model directory exporter (see docs/ARCHITECTURE.md, "The model directory")."""
