"""Analyses: model + texts -> tidy DataFrames (and tensor twins). No plotting or widget imports."""
