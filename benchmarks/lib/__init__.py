"""What the benchmark scripts share (no scripts here): the CORP train step they time
(`step_builder`), its PyTorch counterpart (`torch_r3d`) and the model-FLOP count
(`flop_count`). Imports nothing, so that a script's environment settings come first.
"""
