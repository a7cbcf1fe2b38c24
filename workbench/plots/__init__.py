"""Figures: tidy DataFrame -> plotly figure, in the paper theme. One module per analysis family.

Layer 3: plots read DataFrames and never compute or import torch.
"""
